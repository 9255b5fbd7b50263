"""Input and output schemas as tools/list shows them: small, because they sit in the model's context."""

from __future__ import annotations

from typing import Any

__all__ = ["OBJECT", "compact_schema", "inline_defs", "optional_not_null", "outline_schema"]

# Bounds the server checks itself (a value outside is invalid_input naming the bound): in
# tools/list, on every turn of a model's context, they only cost room.
_ENFORCED_ONLY = frozenset({"minLength", "maxLength", "minimum", "maximum", "minItems"})


def compact_schema(schema: Any) -> Any:
    """Drop what JSON Schema implies anyway (titles, ``additionalProperties: true``,
    ``default: null`` or ``[]``) and bounds the server checks itself, so that tools/list
    stays small in the model's context.

    (``T | None`` stays an ``anyOf`` of single types: a ``"type"`` list is shorter, but
    less portable, and the Inspector's ``--strict`` flags it.)"""
    if isinstance(schema, dict):
        compact = {
            k: compact_schema(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
            and not (k == "additionalProperties" and v is True)
            and not (k == "default" and v in (None, []))
            and k not in _ENFORCED_ONLY
        }
        return compact
    if isinstance(schema, list):
        return [compact_schema(v) for v in schema]
    return schema


def inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each local ``{"$ref": "#/$defs/X"}`` replaced by X itself and no ``$defs``.

    pydantic names every nested model in ``$defs``; a tool's models are small and not
    recursive, and the wrapper and references only cost room in tools/list.
    """
    defs = schema.get("$defs")
    if not isinstance(defs, dict):
        return schema

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            rest = {k: resolve(v) for k, v in node.items() if k != "$ref"}
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return {**resolve(defs[ref.removeprefix("#/$defs/")]), **rest}
            return {**rest, "$ref": ref} if ref is not None else rest
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve({k: v for k, v in schema.items() if k != "$defs"})
    return resolved


def optional_not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional argument whose default is null advertised as its type alone.

    ``x: T | None = None`` accepts null, but a caller says "none" by leaving it out; the
    ``anyOf`` with ``null`` only costs room in the model's context. Validation is the
    server's, against the full signature, so null is still accepted.
    """
    required = set(schema.get("required") or ())
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return schema
    slim: dict[str, Any] = {}
    for name, field in properties.items():
        branches = field.get("anyOf") if isinstance(field, dict) else None
        if (
            name not in required
            and "default" not in field
            and isinstance(branches, list)
            and {"type": "null"} in branches
        ):
            kept = [b for b in branches if b != {"type": "null"}]
            rest = {k: v for k, v in field.items() if k != "anyOf"}
            if len(kept) == 1 and isinstance(kept[0], dict):
                field = {**rest, **kept[0]}
            elif kept:
                field = {**rest, "anyOf": kept}
        slim[name] = field
    return {**schema, "properties": slim}


#: The output schema tools/list advertises for a tool that has one (PgMcpServer.list_tools).
OBJECT: dict[str, Any] = {"type": "object"}


def outline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A plugin tool's output schema as its top-level fields, their JSON types, and which are
    required (nested objects and lists as ``object`` / ``array``): a result that matches the
    full model matches its outline."""
    fields = compact_schema(schema).get("properties") or {}
    outline: dict[str, Any] = {
        "type": "object",
        "properties": {name: {"type": _json_type(f)} for name, f in fields.items() if _json_type(f)},
    }
    if schema.get("required"):
        outline["required"] = schema["required"]
    return outline


def _json_type(field: Any) -> str | None:
    """The one JSON type ``field`` allows, or None where it allows several or says none."""
    if not isinstance(field, dict):
        return None
    if "$ref" in field or "properties" in field:
        return "object"
    kind = field.get("type")
    return kind if isinstance(kind, str) else None
