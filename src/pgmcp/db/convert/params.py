"""JSON parameter values → what asyncpg accepts for ``$1``, ``$2`` …: :func:`convert_params`.

Picks a converter per inferred parameter type (built-in scalars from
:mod:`~pgmcp.db.convert.param_scalars` and :mod:`~pgmcp.db.convert.param_times`,
arrays, ranges, multiranges, composite and unknown types here), caches it, and
turns a :class:`~pgmcp.db.convert.param_scalars._Mismatch` into
:class:`~pgmcp.errors.InvalidInput` naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from pgmcp.db.convert.param_scalars import (
    _NUMBER_RE,
    _Converter,
    _float_converter,
    _geometry_converter,
    _int_converter,
    _json_text,
    _Mismatch,
    _to_bits,
    _to_bool,
    _to_bytea,
    _to_cidr,
    _to_inet,
    _to_json,
    _to_numeric,
    _to_pg_lsn,
    _to_text,
    _to_uuid,
)
from pgmcp.db.convert.param_times import (
    _to_date,
    _to_interval,
    _to_time,
    _to_timestamp,
    _to_timestamptz,
    _to_timetz,
)
from pgmcp.db.convert.values import _RANGE_ELEMENTS
from pgmcp.errors import InvalidInput


def _show(value: Any, limit: int = 60) -> str:
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- containers -----------------------------------------------------------------


def _passthrough(value: Any) -> Any:
    """Value for a type this package does not know: strings as they are, JSON arrays as rows."""
    if isinstance(value, list):
        return tuple(value)
    return value


def _array_converter(element: _Converter, element_label: str) -> _Converter:
    # A nested JSON array is a further dimension, except where an element itself
    # takes arrays (json/jsonb values, composite rows of unknown types).
    nested = element not in (_passthrough, _to_json)

    def convert(value: Any) -> Any:
        if not isinstance(value, list):
            raise _Mismatch(f"a JSON array of {element_label}")
        return walk(value, "")

    def walk(items: list[Any], prefix: str) -> list[Any]:
        out: list[Any] = []
        for index, item in enumerate(items, 1):
            if item is None:
                out.append(None)
            elif isinstance(item, list) and nested:
                out.append(walk(item, f"{prefix}[{index}]"))
            else:
                try:
                    out.append(element(item))
                except _Mismatch as exc:
                    path = f"{prefix}[{index}]{exc.path}"
                    shown = exc.value if exc.has_value else item
                    raise _Mismatch(exc.expected, exc.detail, path, shown, True) from None
        return out

    return convert


_RANGE_TEXT = re.compile(
    r'\s*([\[(])\s*("(?:[^"\\]|\\.)*"|[^,]*?)\s*,\s*("(?:[^"\\]|\\.)*"|[^,]*?)\s*([\])])\s*'
)


def _unquote(bound: str) -> str | None:
    if bound == "":
        return None
    if bound.startswith('"') and bound.endswith('"'):
        return re.sub(r"\\(.)", r"\1", bound[1:-1])
    return bound


def _range_converter(element: _Converter, label: str) -> _Converter:
    expected = f'a range of {label} ({{"lower": …, "upper": …}}, [lower, upper] or text like \'[1,5)\')'

    def bound(value: Any) -> Any:
        return None if value is None else element(value)

    def convert(value: Any) -> asyncpg.Range:
        try:
            if isinstance(value, Mapping):
                if value.get("empty"):
                    return asyncpg.Range(empty=True)
                unknown = set(value) - {"lower", "upper", "lower_inc", "upper_inc", "empty"}
                if unknown:
                    raise _Mismatch(expected)
                return asyncpg.Range(
                    bound(value.get("lower")),
                    bound(value.get("upper")),
                    lower_inc=bool(value.get("lower_inc", True)),
                    upper_inc=bool(value.get("upper_inc", False)),
                )
            if isinstance(value, list) and len(value) == 2:
                return asyncpg.Range(bound(value[0]), bound(value[1]))
            if isinstance(value, str):
                if value.strip().lower() == "empty":
                    return asyncpg.Range(empty=True)
                match = _RANGE_TEXT.fullmatch(value)
                if match:
                    return asyncpg.Range(
                        bound(_unquote(match.group(2))),
                        bound(_unquote(match.group(3))),
                        lower_inc=match.group(1) == "[",
                        upper_inc=match.group(4) == "]",
                    )
        except _Mismatch as exc:
            raise _Mismatch(expected, exc.expected) from None
        raise _Mismatch(expected)

    return convert


def _multirange_converter(one: _Converter, label: str) -> _Converter:
    def convert(value: Any) -> list[Any]:
        if isinstance(value, list):
            return [one(item) for item in value]
        raise _Mismatch(f"a JSON array of ranges of {label}")

    return convert


def _to_composite(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise _Mismatch("a composite value as a JSON array of its fields or an object by field name")


# --- tables -----------------------------------------------------------------------

_INT_CONVERTERS: dict[str, _Converter] = {
    "int2": _int_converter(-(2**15), 2**15 - 1, "an integer (smallint)"),
    "int4": _int_converter(-(2**31), 2**31 - 1, "an integer"),
    "int8": _int_converter(-(2**63), 2**63 - 1, "an integer (bigint)"),
    "oid": _int_converter(0, 2**32 - 1, "an OID (unsigned 32-bit integer)"),
    "xid": _int_converter(0, 2**32 - 1, "a transaction id (unsigned 32-bit integer)"),
    "cid": _int_converter(0, 2**32 - 1, "a command id (unsigned 32-bit integer)"),
    "xid8": _int_converter(0, 2**64 - 1, "a transaction id (unsigned 64-bit integer)"),
}

_PARAM_CONVERTERS: dict[str, _Converter] = {
    **_INT_CONVERTERS,
    "float4": _float_converter("a number (real)", single=True),
    "float8": _float_converter("a number (double precision)", single=False),
    "numeric": _to_numeric,
    "bool": _to_bool,
    "date": _to_date,
    "timestamp": _to_timestamp,
    "timestamptz": _to_timestamptz,
    "time": _to_time,
    "timetz": _to_timetz,
    "interval": _to_interval,
    "uuid": _to_uuid,
    "json": _to_json,
    "jsonb": _to_json,
    "bytea": _to_bytea,
    "inet": _to_inet,
    "cidr": _to_cidr,
    "bit": _to_bits,
    "varbit": _to_bits,
    "pg_lsn": _to_pg_lsn,
    "record": _to_composite,
    **{
        name: _geometry_converter(name)
        for name in ("point", "line", "lseg", "box", "path", "polygon", "circle")
    },
}

_LABELS: dict[str, str] = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "timestamptz": "timestamp with time zone",
    "timetz": "time with time zone",
    "varchar": "character varying",
    "bpchar": "character",
}


def _scalar_converter(name: str, builtin: bool) -> _Converter:
    if builtin:
        found = _PARAM_CONVERTERS.get(name)
        if found is not None:
            return found
        return _to_text
    return _passthrough_or_text


def _passthrough_or_text(value: Any) -> Any:
    """A type outside pg_catalog (enum, extension type, …): asyncpg sends it as text."""
    if isinstance(value, list | Mapping):
        return _json_text(value)
    return _to_text(value)


_CONVERTER_CACHE: dict[tuple[int, str, str, str], _Converter] = {}


def _param_converter(pg_type: Any) -> _Converter:
    key = (int(pg_type.oid), str(pg_type.name), str(pg_type.kind), str(pg_type.schema))
    found = _CONVERTER_CACHE.get(key)
    if found is not None:
        return found
    name, kind, builtin = key[1], key[2], key[3] == "pg_catalog"
    converter: _Converter
    if kind == "array":
        element_name = name[:-2] if name.endswith("[]") else name
        element = _scalar_converter(element_name, builtin) if builtin else _passthrough
        converter = _array_converter(element, _LABELS.get(element_name, element_name))
    elif kind in ("range", "multirange"):
        bound_name = _RANGE_ELEMENTS.get(name) if builtin else None
        element = _scalar_converter(bound_name, True) if bound_name else _passthrough
        label = _LABELS.get(bound_name or "", bound_name or "values")
        one = _range_converter(element, label)
        converter = _multirange_converter(one, label) if kind == "multirange" else one
    elif kind == "composite":
        converter = _to_composite
    else:
        converter = _scalar_converter(name, builtin)
    if len(_CONVERTER_CACHE) < 4096:
        _CONVERTER_CACHE[key] = converter
    return converter


def _count_message(expected: int, got: int) -> str:
    if expected == 0:
        return f"The query expects no parameters, got {got}"
    if expected == 1:
        return f"The query expects 1 parameter ($1), got {got}"
    return f"The query expects {expected} parameters ($1..${expected}), got {got}"


def convert_params(values: Sequence[Any], param_types: Sequence[Any]) -> list[Any]:
    """JSON values → the Python objects asyncpg accepts for ``$1``, ``$2`` ….

    ``param_types`` is ``stmt.get_parameters()`` of the prepared statement.
    Raises :class:`InvalidInput` naming the parameter when a value does not fit
    its type (``Parameter $2: expected a timestamp with time zone …, got 'abc'``)
    and when the number of values differs from the number of parameters.
    """
    return params_converter(param_types)(values)


def params_converter(param_types: Sequence[Any]) -> Callable[[Sequence[Any]], list[Any]]:
    """:func:`convert_params` for one statement, its converters looked up once (for many rows)."""
    converters = [_param_converter(t) for t in param_types]
    expected = len(converters)

    def convert(values: Sequence[Any]) -> list[Any]:
        if len(values) != expected:
            raise InvalidInput(_count_message(expected, len(values)))
        out: list[Any] = []
        for position, (value, converter) in enumerate(zip(values, converters, strict=True), 1):
            if value is None:
                out.append(None)
                continue
            try:
                out.append(converter(value))
            except _Mismatch as exc:
                where = f"Parameter ${position}" + (f", element {exc.path}" if exc.path else "")
                detail = f" ({exc.detail})" if exc.detail else ""
                shown = exc.value if exc.has_value else value
                raise InvalidInput(f"{where}: expected {exc.expected}, got {_show(shown)}{detail}") from None
        return out

    return convert


# --- many rows at once (batch_execute) ------------------------------------------------------------

# Values a converter returns unchanged, recognised by their exact type (and range): for these the
# per-value converter call is skipped. Anything else, NULL included, goes through the converter.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "int2": (-(2**15), 2**15 - 1),
    "int4": (-(2**31), 2**31 - 1),
    "int8": (-(2**63), 2**63 - 1),
}
_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name", "citext"})


def _column_pass(
    pg_type: Any, converter: _Converter
) -> Callable[[tuple[Any, ...]], list[Any] | tuple[Any, ...]]:
    """One column of every row converted, the same values as ``converter`` gives, type-dispatched inline.

    Raises the converter's ``_Mismatch`` for a value that does not fit (the caller then finds
    the row and the parameter the slow way, for the exact message).
    """
    name, builtin = str(pg_type.name), str(pg_type.schema) == "pg_catalog"
    kind = str(pg_type.kind)

    def general(col: tuple[Any, ...]) -> list[Any]:
        return [None if v is None else converter(v) for v in col]

    if not builtin or kind != "scalar":
        return general
    if name in _INT_RANGES and converter is _PARAM_CONVERTERS[name]:
        low, high = _INT_RANGES[name]

        def ints(col: tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
            if all(type(v) is int for v in col) and (not col or (low <= min(col) and max(col) <= high)):
                return col  # already what the converter would return
            return general(col)

        return ints
    if name in _TEXT_TYPES and converter is _to_text:

        def texts(col: tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
            if all(type(v) is str for v in col):
                return col
            return general(col)

        return texts
    if name == "numeric" and converter is _to_numeric:
        fullmatch = _NUMBER_RE.fullmatch

        def numerics(col: tuple[Any, ...]) -> list[Any]:
            # The common case (numeric text, what JSON carries losslessly) inline: _to_numeric's
            # first branch without the call; everything else is _to_numeric's.
            return [
                Decimal(v) if type(v) is str and fullmatch(v) else (None if v is None else _to_numeric(v))
                for v in col
            ]

        return numerics
    return general


def rows_converter(param_types: Sequence[Any]) -> Callable[[Sequence[Sequence[Any]]], list[Any]]:
    """:func:`params_converter` for many rows at once, a column at a time: same values, same errors.

    A 10,000-row ``batch_execute`` spent most of its server time calling a converter per
    value; here a column whose values already have their type (integers in range, strings
    for text) is kept as it is, and numeric text becomes ``Decimal`` inline. A row of the
    wrong length or a value that does not fit is found again row by row by
    :func:`params_converter`, which raises its :class:`InvalidInput` with the row's index
    (``params_list[i]: Parameter $2: …``).
    """
    one = params_converter(param_types)
    converters = [_param_converter(t) for t in param_types]
    passes = [_column_pass(t, c) for t, c in zip(param_types, converters, strict=True)]
    expected = len(converters)

    def slow(rows: Sequence[Sequence[Any]]) -> list[Any]:
        out = []
        for i, values in enumerate(rows):
            try:
                out.append(one(values))
            except InvalidInput as bad:
                raise InvalidInput(f"params_list[{i}]: {bad}") from None
        return out

    def convert(rows: Sequence[Sequence[Any]]) -> list[Any]:
        if expected == 0 or any(len(values) != expected for values in rows):
            return slow(rows)
        try:
            columns = [
                convert_column(col)
                for convert_column, col in zip(passes, zip(*rows, strict=True), strict=True)
            ]
        except (_Mismatch, TypeError, ValueError, ArithmeticError):
            return slow(rows)
        return list(zip(*columns, strict=True))

    return convert
