"""postgresql-mcp-server: safe, fast, observable PostgreSQL access for LLM agents over MCP."""

__version__ = "0.1.0"
