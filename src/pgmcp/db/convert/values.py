"""Python values (as asyncpg returns them) → JSON values, one encoder per kind.

The per-type encoders (``_enc_int8``, ``_enc_numeric``, ``_enc_jsonb`` …),
the container encoders (arrays, ranges, records) and :func:`encode_value`, the
fallback chosen by Python type where no column type is known. Which encoder a
column gets is decided in :mod:`pgmcp.db.convert.rows`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import ipaddress
import json
import re
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg
import orjson

from pgmcp.db._driver import INFINITY_DATE as _INF_DATE
from pgmcp.db._driver import INFINITY_DATETIME as _INF_DATETIME
from pgmcp.db._driver import NEGATIVE_INFINITY_DATE as _NEG_INF_DATE
from pgmcp.db._driver import NEGATIVE_INFINITY_DATETIME as _NEG_INF_DATETIME
from pgmcp.db._driver import PGPROTO_UUID
from pgmcp.db.convert.codecs import _text_identity

JsonValue: TypeAlias = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
_Encoder: TypeAlias = Callable[[Any], JsonValue]

MAX_SAFE_INTEGER = 2**53 - 1


def _enc_int8(value: int) -> JsonValue:
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    return str(value)


def _enc_float8(value: float) -> JsonValue:
    if value - value == 0.0:  # finite
        return value
    return _nonfinite(value)


def _nonfinite(value: float) -> str:
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


_F32 = struct.Struct("f")


def _enc_float4(value: float) -> JsonValue:
    """A ``real`` as PostgreSQL prints it: the shortest decimal that gives the same float32."""
    if value - value != 0.0:
        return _nonfinite(value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if _F32.unpack(_F32.pack(candidate))[0] == value:
            return candidate
    return value


def _enc_numeric(value: Decimal) -> str:
    """Digits as PostgreSQL prints them: ``1.50``, ``100``, ``0.0000000001``, ``NaN``, ``Infinity``."""
    text = str(value)  # exact, and fast; only exponent forms ('1E+20', '1E-10') need expanding
    if "E" not in text:
        return text
    return format(value, "f")


def _enc_date(value: _dt.date | str) -> str:
    if isinstance(value, str):  # outside years 1..9999, already PostgreSQL's text
        return value
    if value is _INF_DATE:
        return "infinity"
    if value is _NEG_INF_DATE:
        return "-infinity"
    return value.isoformat()


def _enc_datetime(value: _dt.datetime) -> str:
    if value is _INF_DATETIME:
        return "infinity"
    if value is _NEG_INF_DATETIME:
        return "-infinity"
    return value.isoformat()


def _enc_time(value: _dt.time) -> str:
    return value.isoformat()


def _enc_interval(value: Any) -> JsonValue:
    if isinstance(value, str):
        return value
    if isinstance(value, _dt.timedelta):
        return _timedelta_text(value)
    return encode_value(value)


def _timedelta_text(value: _dt.timedelta) -> str:
    """PostgreSQL-style text of a timedelta (only without the text interval codec)."""
    micros = value // _dt.timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    days, rest = divmod(abs(micros), 86_400_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}" + (f".{fraction:06d}".rstrip("0") if fraction else "")
    if not days:
        return f"{sign}{clock}"
    day_text = f"{sign}{days} day" + ("" if days == 1 else "s")
    return day_text if not rest else f"{day_text} {sign}{clock}"


def _enc_str(value: Any) -> str:
    return str(value)


def _enc_bytea(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _enc_bits(value: Any) -> str:
    return "".join(str(value.as_string()).split())


def _enc_pg_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def _pg_float_text(value: float) -> str:
    if value - value != 0.0:
        return _nonfinite(value)
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def _point_text(point: Sequence[float]) -> str:
    return f"({_pg_float_text(point[0])},{_pg_float_text(point[1])})"


def _enc_geometry(value: Any) -> str:
    """PostgreSQL's text form of asyncpg's geometric objects."""
    if isinstance(value, asyncpg.Point):
        return _point_text(value)
    if isinstance(value, asyncpg.Circle):
        return f"<{_point_text(value.center)},{_pg_float_text(value.radius)}>"
    if isinstance(value, asyncpg.Line):
        return "{" + ",".join(_pg_float_text(x) for x in value) + "}"
    if isinstance(value, asyncpg.LineSegment):
        return "[" + ",".join(_point_text(p) for p in value) + "]"
    if isinstance(value, asyncpg.Box):
        return ",".join(_point_text(p) for p in value)
    if isinstance(value, asyncpg.Polygon):
        return "(" + ",".join(_point_text(p) for p in value) + ")"
    if isinstance(value, asyncpg.Path):
        points = ",".join(_point_text(p) for p in value)
        return f"({points})" if value.is_closed else f"[{points}]"
    return str(value)


def _enc_tid(value: Any) -> JsonValue:
    if isinstance(value, tuple) and len(value) == 2:
        return f"({value[0]},{value[1]})"
    return encode_value(value)


def _enc_snapshot(value: Any) -> JsonValue:
    if isinstance(value, tuple) and len(value) == 3:
        xmin, xmax, xip = value
        return f"{xmin}:{xmax}:" + ",".join(str(x) for x in xip)
    return encode_value(value)


# --- json / jsonb -------------------------------------------------------------

# A number a double might not keep exactly has 16+ digits (a dot may sit among
# them), or, in ``json`` text, an exponent of three digits (``jsonb`` prints
# numbers without exponents). Text without one parses with orjson directly.
_LONG_DIGITS = re.compile(r"[0-9.]{16}")
_BIG_EXPONENT = re.compile(r"[eE][+-]?[0-9]{3}")


def _json_int(text: str) -> int | str:
    value = int(text)
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    return text


def _json_float(text: str) -> float | str:
    value = float(text)
    if value - value == 0.0 and Decimal(repr(value)) == Decimal(text):
        return value
    return text


def _json_loads_exact(text: str) -> JsonValue:
    result: JsonValue = json.loads(text, parse_int=_json_int, parse_float=_json_float)
    return result


def _enc_jsonb(value: Any) -> JsonValue:
    """``jsonb`` text from PostgreSQL → nested JSON, numbers kept exactly (see the package docstring)."""
    if type(value) is not str:
        return _enc_json(value)
    if len(value) < 16 or _LONG_DIGITS.search(value) is None:
        result: JsonValue = orjson.loads(value)
        return result
    return _json_loads_exact(value)


def _enc_json(value: Any) -> JsonValue:
    """``json`` text from PostgreSQL → nested JSON, numbers kept exactly (see the package docstring)."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8")
    if not isinstance(value, str):
        return encode_value(value)
    if _LONG_DIGITS.search(value) is None and _BIG_EXPONENT.search(value) is None:
        result: JsonValue = orjson.loads(value)
        return result
    return _json_loads_exact(value)


# --- containers -----------------------------------------------------------------


def _array_encoder(element: _Encoder) -> _Encoder:
    def encode(value: Any) -> JsonValue:
        if not isinstance(value, list | tuple):
            return element(value)
        return [None if v is None else encode(v) for v in value]

    return encode


def _range_encoder(element: _Encoder) -> _Encoder:
    def encode(value: Any) -> JsonValue:
        if not isinstance(value, asyncpg.Range):
            return encode_value(value)
        lower = value.lower
        upper = value.upper
        return {
            "lower": None if lower is None else element(lower),
            "upper": None if upper is None else element(upper),
            "lower_inc": bool(value.lower_inc),
            "upper_inc": bool(value.upper_inc),
            "empty": bool(value.isempty),
        }

    return encode


def _multirange_encoder(element: _Encoder) -> _Encoder:
    one = _range_encoder(element)

    def encode(value: Any) -> JsonValue:
        if isinstance(value, list | tuple):
            return [one(r) for r in value]
        return one(value)

    return encode


def _enc_record(value: Any) -> JsonValue:
    if isinstance(value, asyncpg.Record):
        return {str(k): encode_value(v) for k, v in value.items()}
    return encode_value(value)


# --- generic fallback -------------------------------------------------------------


def _enc_ip(value: Any) -> str:
    return str(value)


def encode_value(value: Any) -> JsonValue:
    """JSON for any value asyncpg may return, chosen by its Python type.

    The fallback where no column type is known (composite fields, unknown
    types). Ints follow the ±(2^53−1) rule, ``Decimal`` is a string of digits,
    floats keep NaN/Infinity as strings, ``bytes`` become base64, dates and
    times ISO 8601, containers are encoded element by element. A ``str`` is
    returned as is (the JSON text of ``json`` columns is *not* parsed here).
    """
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    fast = _BY_PYTHON_TYPE.get(kind)
    if fast is not None:
        return fast(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _enc_int8(int(value))
    if isinstance(value, float):
        return _enc_float8(float(value))
    if isinstance(value, Decimal):
        return _enc_numeric(value)
    if isinstance(value, _dt.datetime):
        return _enc_datetime(value)
    if isinstance(value, _dt.date):
        return _enc_date(value)
    if isinstance(value, _dt.time):
        return _enc_time(value)
    if isinstance(value, _dt.timedelta):
        return _timedelta_text(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _enc_bytea(bytes(value))
    if isinstance(value, asyncpg.Record):
        return _enc_record(value)
    if isinstance(value, asyncpg.Range):
        return _range_encoder(encode_value)(value)
    if isinstance(value, asyncpg.BitString):
        return _enc_bits(value)
    if isinstance(
        value,
        asyncpg.Point
        | asyncpg.Box
        | asyncpg.Line
        | asyncpg.LineSegment
        | asyncpg.Path
        | asyncpg.Polygon
        | asyncpg.Circle,
    ):
        return _enc_geometry(value)
    if isinstance(value, Mapping):
        return {str(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [encode_value(v) for v in value]
    return str(value)


_BY_PYTHON_TYPE: dict[type, _Encoder] = {
    str: _text_identity,
    int: _enc_int8,
    float: _enc_float8,
    Decimal: _enc_numeric,
    _dt.datetime: _enc_datetime,
    _dt.date: _enc_date,
    _dt.time: _enc_time,
    _dt.timedelta: _timedelta_text,
    uuid.UUID: _enc_str,
    PGPROTO_UUID: _enc_str,
    bytes: _enc_bytea,
    ipaddress.IPv4Address: _enc_ip,
    ipaddress.IPv6Address: _enc_ip,
    ipaddress.IPv4Interface: _enc_ip,
    ipaddress.IPv6Interface: _enc_ip,
    ipaddress.IPv4Network: _enc_ip,
    ipaddress.IPv6Network: _enc_ip,
    list: lambda v: [encode_value(x) for x in v],
    tuple: lambda v: [encode_value(x) for x in v],
    dict: lambda v: {str(k): encode_value(x) for k, x in v.items()},
    asyncpg.Record: _enc_record,
    asyncpg.BitString: _enc_bits,
}


# The element type of each built-in range and multirange; the row encoders and the
# parameter converters both pick their bound converter by it.
_RANGE_ELEMENTS: dict[str, str] = {
    "int4range": "int4",
    "int8range": "int8",
    "numrange": "numeric",
    "daterange": "date",
    "tsrange": "timestamp",
    "tstzrange": "timestamptz",
    "int4multirange": "int4",
    "int8multirange": "int8",
    "nummultirange": "numeric",
    "datemultirange": "date",
    "tsmultirange": "timestamp",
    "tstzmultirange": "timestamptz",
}
