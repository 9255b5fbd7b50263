"""The tools of SPEC §3, one module per family. They return plain dicts; the MCP edge
(``pgmcp.registration``) turns them, and every :class:`pgmcp.errors.PgMcpError` they raise,
into the one response shape."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, WithJsonSchema

# Array elements are any JSON (2-D arrays, NULLs, jsonb arrays of objects): convert_params checks
# them against the type PostgreSQL infers for the parameter. The schema still names the JSON
# types, so strict clients (MCP Inspector --strict) see a declared contract, not a bare `{}`.
# One anyOf of single JSON types (a "type" list is shorter but less portable); integers are numbers.
ParamValue = Annotated[
    Any,
    WithJsonSchema(
        {"anyOf": [{"type": t} for t in ("string", "number", "boolean", "null", "array", "object")]}
    ),
]

ConnectionId = Annotated[
    str,
    Field(min_length=1, max_length=128, description="Connection name."),
]
Params = Annotated[
    list[ParamValue],
    Field(
        description="Values for $1, $2 … as JSON ('2024-01-01' for a date, an object for jsonb).",
    ),
]
