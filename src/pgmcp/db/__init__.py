"""Database layer: the registry of named pools, the one execute path, type conversion, the embedded server."""
