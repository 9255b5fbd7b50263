"""Result rows → JSON objects: column names, column info and the row encoders.

:func:`column_names` (duplicates suffixed ``_2``, ``_3`` …), :func:`column_info`
(the ``columns`` field), and :func:`make_row_encoder`, which picks each
column's encoder from its PostgreSQL type and generates, once per column list,
the function turning an ``asyncpg.Record`` into ``{column: json value}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import asyncpg

from pgmcp.db.convert.codecs import _text_identity
from pgmcp.db.convert.values import (
    _RANGE_ELEMENTS,
    JsonValue,
    _array_encoder,
    _enc_bits,
    _enc_bytea,
    _enc_date,
    _enc_datetime,
    _enc_float4,
    _enc_float8,
    _enc_geometry,
    _enc_int8,
    _enc_interval,
    _enc_json,
    _enc_jsonb,
    _enc_numeric,
    _enc_pg_lsn,
    _enc_record,
    _enc_snapshot,
    _enc_str,
    _enc_tid,
    _enc_time,
    _Encoder,
    _multirange_encoder,
    _range_encoder,
    encode_value,
)

RowEncoder: TypeAlias = Callable[[asyncpg.Record], dict[str, JsonValue]]

_DISPLAY_NAMES: dict[str, str] = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar": "character varying",
    "bpchar": "character",
    "varbit": "bit varying",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
    "char": '"char"',
}


def column_names(attributes: Sequence[Any]) -> list[str]:
    """The JSON keys of a result's columns: PostgreSQL's names, duplicates suffixed.

    The first column of a name keeps it; a later duplicate gets ``name_2``,
    ``name_3`` … (the first suffix not used by any other column), so
    ``SELECT 1 AS a, 2 AS a`` gives ``a``, ``a_2`` and no value is lost.
    """
    raw = [str(attr.name) for attr in attributes]
    if len(set(raw)) == len(raw):
        return raw
    taken = set(raw)
    seen: set[str] = set()
    names: list[str] = []
    for name in raw:
        if name not in seen:
            seen.add(name)
            names.append(name)
            continue
        n = 2
        while f"{name}_{n}" in taken:
            n += 1
        new = f"{name}_{n}"
        taken.add(new)
        names.append(new)
    return names


def _type_display(pg_type: Any) -> str:
    name = str(pg_type.name)
    if pg_type.kind == "array" and name.endswith("[]"):
        element = name[:-2]
        shown = element if pg_type.schema != "pg_catalog" else _DISPLAY_NAMES.get(element, element)
        suffix = "[]"
    else:
        shown = name if pg_type.schema != "pg_catalog" else _DISPLAY_NAMES.get(name, name)
        suffix = ""
    if pg_type.schema not in ("pg_catalog", "public", None, ""):
        shown = f"{pg_type.schema}.{shown}"
    return shown + suffix


def column_info(attributes: Sequence[Any]) -> list[dict[str, str]]:
    """``[{"name", "type"}]`` for a result; names as :func:`column_names` gives them.

    ``type`` is PostgreSQL's SQL name (``integer``, ``bigint``, ``numeric``,
    ``timestamp with time zone``, ``jsonb``, ``integer[]`` …). A ``bytea``
    column (or array of them) says ``bytea (base64)`` and carries
    ``"encoding": "base64"``, since its values come back base64-encoded.
    """
    info: list[dict[str, str]] = []
    for name, attr in zip(column_names(attributes), attributes, strict=True):
        shown = _type_display(attr.type)
        entry = {"name": name, "type": shown}
        if attr.type.schema == "pg_catalog" and attr.type.name in ("bytea", "bytea[]"):
            entry["type"] = f"{shown} (base64)"
            entry["encoding"] = "base64"
        info.append(entry)
    return info


# --- per-type encoders -------------------------------------------------------------

# pg_catalog types whose asyncpg value already is the JSON value.
_IDENTITY_TYPES = frozenset(
    {
        "bool",
        "int2",
        "int4",
        "oid",
        "xid",
        "cid",
        "regproc",
        "regprocedure",
        "regoper",
        "regoperator",
        "regclass",
        "regtype",
        "regconfig",
        "regdictionary",
        "regnamespace",
        "regrole",
        "regcollation",
        "regdatabase",
        "refcursor",
        "text",
        "varchar",
        "bpchar",
        "name",
        "char",
        "unknown",
        "xml",
        "macaddr",
        "macaddr8",
        "money",
        "tsvector",
        "tsquery",
        "gtsvector",
        "jsonpath",
        "aclitem",
        "cstring",
        "pg_node_tree",
        "pg_ndistinct",
        "pg_dependencies",
        "smgr",
    }
)

_SCALAR_ENCODERS: dict[str, _Encoder] = {
    "int8": _enc_int8,
    "xid8": _enc_int8,
    "float4": _enc_float4,
    "float8": _enc_float8,
    "numeric": _enc_numeric,
    "date": _enc_date,
    "timestamp": _enc_datetime,
    "timestamptz": _enc_datetime,
    "time": _enc_time,
    "timetz": _enc_time,
    "interval": _enc_interval,
    "uuid": _enc_str,
    "inet": _enc_str,
    "cidr": _enc_str,
    "bytea": _enc_bytea,
    "json": _enc_json,
    "jsonb": _enc_jsonb,
    "bit": _enc_bits,
    "varbit": _enc_bits,
    "pg_lsn": _enc_pg_lsn,
    "point": _enc_geometry,
    "line": _enc_geometry,
    "lseg": _enc_geometry,
    "box": _enc_geometry,
    "path": _enc_geometry,
    "polygon": _enc_geometry,
    "circle": _enc_geometry,
    "tid": _enc_tid,
    "txid_snapshot": _enc_snapshot,
    "pg_snapshot": _enc_snapshot,
    "record": _enc_record,
}


def _scalar_encoder(name: str, builtin: bool) -> _Encoder | None:
    """Encoder of a non-NULL value of a scalar type; ``None`` means identity."""
    if builtin:
        if name in _IDENTITY_TYPES:
            return None
        found = _SCALAR_ENCODERS.get(name)
        if found is not None:
            return found
    return encode_value


def _column_encoder(pg_type: Any) -> _Encoder | None:
    """Encoder of a column's non-NULL values; ``None`` when the value already is JSON."""
    name = str(pg_type.name)
    kind = pg_type.kind
    builtin = pg_type.schema == "pg_catalog"
    if kind == "array":
        element_name = name[:-2] if name.endswith("[]") else name
        element = _scalar_encoder(element_name, builtin)
        if element is None:
            return None  # a list of ints/strings/bools/None is JSON already
        return _array_encoder(element)
    if kind in ("range", "multirange"):
        bound_name = _RANGE_ELEMENTS.get(name) if builtin else None
        bound = _scalar_encoder(bound_name, True) if bound_name else encode_value
        element = bound or _text_identity
        return _multirange_encoder(element) if kind == "multirange" else _range_encoder(element)
    if kind == "composite":
        return _enc_record
    return _scalar_encoder(name, builtin)


_ENCODER_CACHE: dict[tuple[Any, ...], RowEncoder] = {}
_ENCODER_CACHE_SIZE = 512


def make_row_encoder(attributes: Sequence[Any]) -> RowEncoder:
    """Build once per statement the function turning a ``Record`` into ``{column: json}``.

    Keys are :func:`column_names` (duplicates suffixed ``_2``, ``_3`` …). The
    function is generated for this column list: identity columns are copied,
    the others call their encoder when the value is not NULL. Encoders are
    cached by column list (asyncpg's ``Attribute``/``Type`` are value tuples),
    so a repeated query does not build again.
    """
    key = attributes if isinstance(attributes, tuple) else tuple(attributes)
    try:
        cached = _ENCODER_CACHE.get(key)
    except TypeError:  # attributes that are not hashable: build every time
        return _build_row_encoder(attributes)
    if cached is not None:
        return cached
    encoder = _build_row_encoder(attributes)
    if len(_ENCODER_CACHE) >= _ENCODER_CACHE_SIZE:
        _ENCODER_CACHE.pop(next(iter(_ENCODER_CACHE)))  # drop the oldest
    _ENCODER_CACHE[key] = encoder
    return encoder


def _build_row_encoder(attributes: Sequence[Any]) -> RowEncoder:
    names = column_names(attributes)
    encoders = [_column_encoder(attr.type) for attr in attributes]
    count = len(names)
    if count == 0:
        return lambda record: {}
    # Generated source refers only to positional variables (c0, n0, f0 …); column
    # names and encoders are bound through the namespace, never spliced into code.
    namespace: dict[str, Any] = {}
    items: list[str] = []
    for i, (name, encoder) in enumerate(zip(names, encoders, strict=True)):
        namespace[f"n{i}"] = name
        if encoder is None:
            items.append(f"n{i}: c{i}")
        else:
            namespace[f"f{i}"] = encoder
            items.append(f"n{i}: None if c{i} is None else f{i}(c{i})")
    unpack = ", ".join(f"c{i}" for i in range(count)) + ","
    source = f"def encode(record):\n    {unpack} = record\n    return {{{', '.join(items)}}}\n"
    exec(compile(source, "<pgmcp row encoder>", "exec"), namespace)  # noqa: S102 - see comment above
    encode: RowEncoder = namespace["encode"]
    return encode
