"""JSON values in, JSON values out: the one place where PostgreSQL types meet JSON.

Three jobs, all without I/O:

* :func:`convert_params` turns the JSON values a caller sent for ``$1``, ``$2`` …
  into the Python objects asyncpg's codecs accept for the types PostgreSQL
  inferred (``stmt.get_parameters()``), and refuses a value that does not fit
  with :class:`~pgmcp.errors.InvalidInput` naming the parameter
  (``Parameter $2: expected a timestamp with time zone, got 'abc'``).
* :func:`make_row_encoder` builds, once per statement (``stmt.get_attributes()``),
  a function turning an ``asyncpg.Record`` into ``{column: json value}``.
  Columns whose Python value already is JSON (``integer``, ``text``,
  ``boolean`` …) cost nothing; the others get a per-column encoder.
* :func:`column_info` describes the columns for the ``columns`` field.

The pool must call :func:`setup_connection_codecs` on every new connection
(``asyncpg.create_pool(init=...)``), after ``SET TimeZone = 'UTC'``. It
installs two codecs, and the conversions here assume them:

* ``interval`` in PostgreSQL's **text** format: ``'1 mon 2 days 03:04:05'``
  comes back exactly as psql shows it (asyncpg's default binary codec returns
  a ``timedelta`` and folds months into 30 days), and interval parameters go
  to PostgreSQL's own parser (``'1 day'``, ``'01:30:00'``, ISO ``'P1DT2H'``).
  Other code on the pool then reads intervals as ``str`` (use
  ``extract(epoch from …)`` where a number is wanted); it may still *send* a
  ``timedelta``.
* ``date`` through a small Python codec that keeps asyncpg's values
  (``datetime.date``, asyncpg's own objects for ±infinity) but stores a real
  ``9999-12-31`` as that date (asyncpg's codec sends it as ``infinity``) and
  reads dates outside years 1..9999 as PostgreSQL's text (``'0044-03-15 BC'``)
  instead of failing the whole fetch (such text can be sent back too).

Everything else keeps asyncpg's defaults: ``json``/``jsonb`` travel as JSON
*text* both ways (decoded here, losslessly), ``numeric`` as ``Decimal``.

Known limits (asyncpg's binary codecs): a ``timestamp``/``timestamptz``
outside years 1..9999 cannot be read (cast it to ``text``), and the parameter
values ``'9999-12-31 23:59:59.999999'`` and ``'0001-01-01 00:00:00'`` are sent
as ``infinity``/``-infinity``; read back, a real ``9999-12-31 23:59:59.999999``
is told apart from ``infinity`` (asyncpg returns distinct objects).

Encoding of values (SPEC §3, "values come back as JSON without loss"):

==========================  ==================================================
PostgreSQL                  JSON
==========================  ==================================================
``smallint``/``integer``    number
``bigint``                  number; outside ±(2^53−1) a string of its digits
``numeric``                 string with every digit PostgreSQL prints
                            (``'1.50'``, ``'100'``); ``'NaN'``,
                            ``'Infinity'``, ``'-Infinity'``
``real``/``double``         number (``real`` as PostgreSQL prints it: ``1.1``);
                            ``'NaN'``, ``'Infinity'``, ``'-Infinity'``
``date``/``timestamp``      ISO 8601 (``2024-01-15T10:00:00.123456``);
                            ``'infinity'``/``'-infinity'``; a date outside
                            years 1..9999 as PostgreSQL prints it
                            (``'0044-03-15 BC'``, ``'10000-01-01'``)
``timestamptz``             ISO 8601 with offset (``…+00:00``)
``time``/``timetz``         ISO 8601
``interval``                PostgreSQL's text (``'1 mon 2 days 03:04:05'``)
``bytea``                   base64 (``column_info`` says ``bytea (base64)``)
``json``/``jsonb``          nested JSON; a number inside that a double would
                            not keep exactly (an integer outside ±(2^53−1),
                            more than 15 significant digits) becomes a string
                            of its digits
arrays                      lists (nested for several dimensions)
ranges                      ``{"lower", "upper", "lower_inc", "upper_inc",
                            "empty"}``; multiranges lists of those
composite types             objects (anonymous ``ROW(...)``: lists)
``bit``/``varbit``          string of bits (``'101'``)
``pg_lsn``                  ``'0/16B6C50'``
geometric, ``tid``,         PostgreSQL's text form
``txid_snapshot``
uuid, inet, cidr, macaddr,  strings
money, enums, xml,
tsvector, other types
==========================  ==================================================

Duplicate column names (``SELECT 1 AS a, 2 AS a``) do not lose data: the first
keeps its name, later ones get the first free ``_2``, ``_3`` … suffix (``a``,
``a_2``); a name that occurs only once is never changed.

Conversion of parameters (JSON → PostgreSQL), by inferred type; ``null`` is
NULL for every type:

* integer types: a JSON integer, a float without fraction (``3.0``) or a string
  of digits (``"123"``), checked against the type's range; never a boolean.
* ``numeric``: numbers and numeric strings become ``Decimal`` exactly
  (``299.99`` stays ``299.99``, via the float's shortest text).
* ``real``/``double``: numbers, numeric strings, ``"NaN"``, ``"Infinity"``.
* ``boolean``: ``true``/``false``, PostgreSQL's words (``"t"``, ``"yes"``,
  ``"off"`` …) and ``0``/``1``.
* ``date``, ``timestamp``, ``timestamptz``, ``time``, ``timetz``: ISO 8601
  strings (``"2024-01-01"``, ``"2024-01-15 10:00:00"``,
  ``"2024-01-15T10:00:00Z"``, ``"…+08:00"``, a trailing zone name such as
  ``"… Europe/Paris"``), ``"infinity"``, ``"-infinity"``, ``"epoch"``,
  ``"now"``, ``"today"``, ``"tomorrow"``, ``"yesterday"``. A timestamp with no
  offset given for ``timestamptz`` is UTC (the session TimeZone of the pool);
  an offset given for ``timestamp`` is ignored, as PostgreSQL does.
* ``interval``: PostgreSQL's interval syntax or ISO 8601 (``"P1DT2H"``),
  checked here, parsed by PostgreSQL; a number is seconds.
* ``uuid``: its text; ``inet``/``cidr``: address text; ``bytea``: base64 (or
  PostgreSQL's hex form ``"\\x0102"``).
* ``json``/``jsonb``: an object, array, number or boolean is encoded as JSON;
  a string that is valid JSON text is used as that text (``"[1, 2]"`` is an
  array, ``"5"`` the number 5), any other string is the JSON string itself
  (``"hello"`` → ``"hello"``). A string that starts like an object or array
  (``{``/``[``) but is not valid JSON is refused rather than stored as a string.
* text-like types (and enums, and types this module does not know): strings as
  they are; numbers and booleans as their text (``123`` → ``'123'``); objects
  and arrays as JSON text.
* arrays: JSON arrays, element by element (nested arrays for several
  dimensions); ranges: ``{"lower", "upper", "lower_inc", "upper_inc"}``,
  ``[lower, upper]`` (``[)``) or PostgreSQL's text (``"[1,5)"``);
  composite types: a JSON array of the fields or an object by field name.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import ipaddress
import json
import math
import re
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson
from asyncpg.pgproto import pgproto as _pgproto

from pgmcp.errors import InvalidInput

__all__ = [
    "JsonValue",
    "column_info",
    "column_names",
    "convert_params",
    "encode_value",
    "make_row_encoder",
    "setup_connection_codecs",
]

JsonValue: TypeAlias = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
RowEncoder: TypeAlias = Callable[[asyncpg.Record], dict[str, JsonValue]]
_Encoder: TypeAlias = Callable[[Any], JsonValue]
_Converter: TypeAlias = Callable[[Any], Any]

MAX_SAFE_INTEGER = 2**53 - 1
_UTC = _dt.UTC

# asyncpg returns these very objects for PostgreSQL's +/-infinity dates and
# timestamps; a real 9999-12-31 is a different object, so identity tells them apart.
_INF_DATE: Any = _pgproto.infinity_date
_NEG_INF_DATE: Any = _pgproto.negative_infinity_date
_INF_DATETIME: Any = _pgproto.infinity_datetime
_NEG_INF_DATETIME: Any = _pgproto.negative_infinity_datetime


# =============================================================================
# Connection setup
# =============================================================================


def _interval_to_text(value: Any) -> str:
    """Encoder of the text ``interval`` codec: strings as they are, ``timedelta`` too."""
    if isinstance(value, str):
        return value
    if isinstance(value, _dt.timedelta):
        return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
    raise TypeError(f"expected an interval as text or datetime.timedelta, got {type(value).__name__}")


def _text_identity(value: str) -> str:
    return value


# PostgreSQL stores a date as days since 2000-01-01, +/-infinity as the int32 extremes.
_PG_DATE_INFINITY = 0x7FFFFFFF
_PG_DATE_NEG_INFINITY = -0x80000000
_PG_DATE_EPOCH = _dt.date(2000, 1, 1).toordinal()
_date_fromordinal = _dt.date.fromordinal


def _civil_date_text(pg_days: int) -> str:
    """PostgreSQL's text of a date Python cannot hold (years before 1 or after 9999)."""
    # Howard Hinnant's days → civil algorithm, proleptic Gregorian, year 0 = 1 BC.
    z = pg_days + 10957 + 719468  # days since 1970-01-01, shifted to 0000-03-01
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    if year <= 0:
        return f"{1 - year:04d}-{month:02d}-{day:02d} BC"
    return f"{year:04d}-{month:02d}-{day:02d}"


_DATE_TEXT = re.compile(r"\s*([0-9]{4,7})-([0-9]{2})-([0-9]{2})(\s+BC)?\s*", re.IGNORECASE)


def _pg_days_from_text(text: str) -> int | None:
    """Days since 2000-01-01 of ``YYYY-MM-DD[ BC]`` (any year), or ``None`` if no such date."""
    match = _DATE_TEXT.fullmatch(text)
    if match is None:
        return None
    year, month, day = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if year == 0:
        return None  # there is no year 0 (1 BC comes before AD 1)
    if match.group(4):
        year = 1 - year  # 1 BC is year 0
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468 - 10957
    canonical = f"{abs(year) if year > 0 else 1 - year:04d}-{month:02d}-{day:02d}" + (
        " BC" if year <= 0 else ""
    )
    return days if _civil_date_text(days) == canonical else None  # 02-30 and friends


def _date_decode(value: tuple[int]) -> Any:
    """``date`` from its binary form: asyncpg's own objects, but no crash outside years 1..9999."""
    days = value[0]
    if days == _PG_DATE_INFINITY:
        return _INF_DATE
    if days == _PG_DATE_NEG_INFINITY:
        return _NEG_INF_DATE
    try:
        return _date_fromordinal(days + _PG_DATE_EPOCH)
    except (ValueError, OverflowError):
        return _civil_date_text(days)


def _date_encode(value: Any) -> tuple[int]:
    """``date`` to its binary form; only asyncpg's infinity objects mean +/-infinity.

    (asyncpg's own codec sends any ``date(9999, 12, 31)`` as ``infinity``.)
    """
    if value is _INF_DATE:
        return (_PG_DATE_INFINITY,)
    if value is _NEG_INF_DATE:
        return (_PG_DATE_NEG_INFINITY,)
    if isinstance(value, _dt.date):
        return (value.toordinal() - _PG_DATE_EPOCH,)
    if isinstance(value, str):  # what _date_decode gives for years outside 1..9999
        days = _pg_days_from_text(value)
        if days is not None:
            return (days,)
    raise TypeError(f"expected a datetime.date or 'YYYY-MM-DD[ BC]', got {value!r}")


async def setup_connection_codecs(conn: asyncpg.Connection) -> None:
    """Install the codecs this module relies on; call it from the pool's ``init=``.

    * ``interval`` travels as PostgreSQL's text (decoded to ``str``, encoded
      from ``str`` or ``timedelta``), so months and days survive.
    * ``date`` keeps asyncpg's values (``datetime.date``; its ``date.max``-like
      objects for ±infinity) with two fixes: a real ``9999-12-31`` parameter is
      stored as that date, not as ``infinity``, and a date outside years
      1..9999 (``'0044-03-15 BC'``, ``'10000-01-01'``) is read as PostgreSQL's
      text instead of failing the whole fetch.
    """
    await conn.set_type_codec(
        "interval",
        schema="pg_catalog",
        encoder=_interval_to_text,
        decoder=_text_identity,
        format="text",
    )
    await conn.set_type_codec(
        "date",
        schema="pg_catalog",
        encoder=_date_encode,
        decoder=_date_decode,
        format="tuple",
    )


# =============================================================================
# Column names and types
# =============================================================================

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


# =============================================================================
# Encoding values (Python → JSON)
# =============================================================================


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
    """``jsonb`` text from PostgreSQL → nested JSON, numbers kept exactly (see module doc)."""
    if type(value) is not str:
        return _enc_json(value)
    if len(value) < 16 or _LONG_DIGITS.search(value) is None:
        result: JsonValue = orjson.loads(value)
        return result
    return _json_loads_exact(value)


def _enc_json(value: Any) -> JsonValue:
    """``json`` text from PostgreSQL → nested JSON, numbers kept exactly (see module doc)."""
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
    type(_pgproto.UUID(b"\x00" * 16)): _enc_str,
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


# =============================================================================
# Converting parameters (JSON → Python for asyncpg)
# =============================================================================


class _Mismatch(Exception):
    """A value does not fit the parameter's type; ``expected`` completes "expected …"."""

    def __init__(
        self,
        expected: str,
        detail: str | None = None,
        path: str = "",
        value: Any = None,
        has_value: bool = False,
    ) -> None:
        super().__init__(expected)
        self.expected = expected
        self.detail = detail
        self.path = path
        self.value = value
        self.has_value = has_value


def _show(value: Any, limit: int = 60) -> str:
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_INT_RE = re.compile(r"\s*[+-]?[0-9]+\s*")
_NUMBER_RE = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_SPECIAL_FLOATS = {
    "nan": math.nan,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-infinity": -math.inf,
    "inf": math.inf,
    "+inf": math.inf,
    "-inf": -math.inf,
}
_SPECIAL_NUMERICS = {
    "nan": Decimal("NaN"),
    "infinity": Decimal("Infinity"),
    "+infinity": Decimal("Infinity"),
    "-infinity": Decimal("-Infinity"),
    "inf": Decimal("Infinity"),
    "+inf": Decimal("Infinity"),
    "-inf": Decimal("-Infinity"),
}


def _int_converter(low: int, high: int, expected: str) -> _Converter:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise _Mismatch(expected)
        if isinstance(value, int):
            result = value
        elif isinstance(value, float | Decimal):
            if not value.is_finite() if isinstance(value, Decimal) else not math.isfinite(value):
                raise _Mismatch(expected)
            if value != int(value):
                raise _Mismatch(expected)
            result = int(value)
        elif isinstance(value, str) and _INT_RE.fullmatch(value):
            result = int(value)
        else:
            raise _Mismatch(expected)
        if not low <= result <= high:
            raise _Mismatch(expected, f"out of range {low}..{high}")
        return result

    return convert


def _float_converter(expected: str, single: bool) -> _Converter:
    def convert(value: Any) -> float:
        if isinstance(value, bool):
            raise _Mismatch(expected)
        if isinstance(value, int | float | Decimal):
            result = float(value)
        elif isinstance(value, str):
            special = _SPECIAL_FLOATS.get(value.strip().lower())
            if special is not None:
                return special
            if not _NUMBER_RE.fullmatch(value):
                raise _Mismatch(expected)
            result = float(value)
        else:
            raise _Mismatch(expected)
        if single and math.isfinite(result) and abs(result) > 3.4028234663852886e38:
            raise _Mismatch(expected, "out of range for real")
        if not single and not math.isfinite(result) and isinstance(value, str):
            raise _Mismatch(expected, "out of range for double precision")
        return result

    return convert


def _to_numeric(value: Any) -> Decimal:
    expected = "a numeric value"
    if isinstance(value, bool):
        raise _Mismatch(expected)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return Decimal(repr(value).replace("inf", "Infinity").replace("nan", "NaN"))
        return Decimal(repr(value))  # the float's shortest text: 299.99 stays 299.99
    if isinstance(value, str):
        special = _SPECIAL_NUMERICS.get(value.strip().lower())
        if special is not None:
            return special
        if _NUMBER_RE.fullmatch(value):
            try:
                return Decimal(value.strip())
            except InvalidOperation:
                pass
    raise _Mismatch(expected)


_BOOL_WORDS = {
    "t": True,
    "true": True,
    "y": True,
    "yes": True,
    "on": True,
    "1": True,
    "f": False,
    "false": False,
    "n": False,
    "no": False,
    "off": False,
    "0": False,
}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        found = _BOOL_WORDS.get(value.strip().lower())
        if found is not None:
            return found
    raise _Mismatch("a boolean")


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _pg_float_text(value)
    return _json_text(value)


def _json_text(value: Any) -> str:
    """JSON text of a JSON value (and, for Python callers, of what encode_value can encode)."""
    try:
        return orjson.dumps(value, default=encode_value).decode()
    except TypeError:  # an integer beyond 64 bits, a lone surrogate …
        pass
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=encode_value)
    except (TypeError, ValueError):
        raise _Mismatch("a JSON value") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_json_text(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson refuses numbers beyond a double or 64 bits that PostgreSQL accepts
        try:
            json.loads(text, parse_constant=_reject_constant, parse_float=Decimal)
        except ValueError:
            return False
    return True


def _to_json(value: Any) -> str:
    if isinstance(value, str):
        if not _is_json_text(value):
            stripped = value.lstrip()
            if stripped[:1] in ("{", "["):
                raise _Mismatch("JSON (an object, array, or valid JSON text)", "not valid JSON")
            return _json_text(value)
        return value
    return _json_text(value)


def _to_bytea(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        if value.startswith("\\x"):
            try:
                return bytes.fromhex(value[2:])
            except ValueError:
                raise _Mismatch("bytea as base64 or \\x hex text") from None
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _Mismatch("bytea as base64 text") from None
    raise _Mismatch("bytea as base64 text")


def _to_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            pass
    raise _Mismatch("a UUID")


def _to_inet(value: Any) -> Any:
    if isinstance(value, _IP_TYPES):
        return value
    if isinstance(value, str):
        try:
            return ipaddress.ip_interface(value.strip())
        except ValueError:
            pass
    raise _Mismatch("an IP address (inet)")


_IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)


def _to_cidr(value: Any) -> Any:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value.strip(), strict=True)
        except ValueError:
            pass
    raise _Mismatch("a network address (cidr) without bits set right of the mask")


def _to_bits(value: Any) -> asyncpg.BitString:
    if isinstance(value, str) and re.fullmatch(r"[01 ]*", value):
        return asyncpg.BitString(value.replace(" ", ""))
    raise _Mismatch("a bit string such as '1010'")


def _to_pg_lsn(value: Any) -> int:
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\s*", value)
        if match:
            return (int(match.group(1), 16) << 32) | int(match.group(2), 16)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    raise _Mismatch("a WAL location such as '0/16B6C50'")


# --- dates and times -------------------------------------------------------------

_FRACTION = re.compile(r"(\d{2}:\d{2}:\d{2})\.(\d{7,})")
_ZONE_SUFFIX = re.compile(r"^(.*[0-9])\s*(?:\s([A-Za-z][A-Za-z0-9_/+-]*))$")
_UTC_WORDS = {"utc": "+00:00", "gmt": "+00:00", "z": "+00:00", "zulu": "+00:00"}


def _round_fraction(text: str) -> tuple[str, int]:
    """Keep 6 fractional digits; return the extra microsecond PostgreSQL's rounding adds."""
    match = _FRACTION.search(text)
    if match is None:
        return text, 0
    digits = match.group(2)
    carry = 1 if digits[6] >= "5" else 0
    return text[: match.start(2)] + digits[:6] + text[match.end(2) :], carry


def _parse_datetime(text: str, aware: bool) -> _dt.datetime:
    """ISO 8601 / PostgreSQL-style timestamp text; naive unless an offset or zone was given."""
    word = text.strip().lower()
    # asyncpg writes +/-infinity for these naive sentinels, for timestamptz too.
    if word in ("infinity", "+infinity"):
        return _INF_DATETIME  # type: ignore[no-any-return]
    if word == "-infinity":
        return _NEG_INF_DATETIME  # type: ignore[no-any-return]
    if word in ("epoch", "now", "today", "tomorrow", "yesterday"):
        now = _dt.datetime.now(_UTC)
        if word == "epoch":
            return _dt.datetime(1970, 1, 1, tzinfo=_UTC)
        if word == "now":
            return now
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight + _dt.timedelta(days={"today": 0, "tomorrow": 1, "yesterday": -1}[word])
    body, carry = _round_fraction(text.strip())
    zone: _dt.tzinfo | None = None
    match = _ZONE_SUFFIX.match(body)
    if match is not None:
        name = match.group(2)
        offset = _UTC_WORDS.get(name.lower())
        if offset is not None:
            body = match.group(1) + offset
        else:
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(name) from None
            body = match.group(1)
    result = _dt.datetime.fromisoformat(body)
    if zone is not None:
        result = result.replace(tzinfo=zone)
    if carry:
        result += _dt.timedelta(microseconds=1)
    return result


def _to_timestamp(value: Any) -> _dt.datetime:
    expected = "a timestamp (ISO 8601, e.g. '2024-01-15 10:00:00')"
    if isinstance(value, _dt.datetime):  # from Python callers (custom tools)
        return value if value.tzinfo is None else value.replace(tzinfo=None)
    if not isinstance(value, str):
        raise _Mismatch(expected)
    try:
        result = _parse_datetime(value, aware=False)
    except (ValueError, OverflowError):
        raise _Mismatch(expected) from None
    if result.tzinfo is not None:
        result = result.replace(tzinfo=None)  # as PostgreSQL: an offset is ignored for timestamp
    return result


def _to_timestamptz(value: Any) -> _dt.datetime:
    expected = "a timestamp with time zone (ISO 8601, e.g. '2024-01-15T10:00:00Z')"
    if isinstance(value, _dt.datetime):  # from Python callers (custom tools)
        result = value
    elif isinstance(value, str):
        try:
            result = _parse_datetime(value, aware=True)
        except (ValueError, OverflowError):
            raise _Mismatch(expected) from None
    else:
        raise _Mismatch(expected)
    if result.tzinfo is None and result is not _INF_DATETIME and result is not _NEG_INF_DATETIME:
        result = result.replace(tzinfo=_UTC)  # the pool's sessions run with TimeZone UTC
    return result


def _to_date(value: Any) -> _dt.date | str:
    expected = "a date (ISO 8601, e.g. '2024-01-15')"
    if isinstance(value, _dt.date):  # from Python callers (custom tools)
        return value.date() if isinstance(value, _dt.datetime) else value
    if not isinstance(value, str):
        raise _Mismatch(expected)
    text = value.strip()
    word = text.lower()
    if word in ("infinity", "+infinity"):
        return _INF_DATE  # type: ignore[no-any-return]
    if word == "-infinity":
        return _NEG_INF_DATE  # type: ignore[no-any-return]
    try:
        return _dt.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return _parse_datetime(text, aware=False).date()
    except (ValueError, OverflowError):
        pass
    if _pg_days_from_text(text) is not None:
        return text  # years Python cannot hold: the date codec of setup_connection_codecs sends them
    raise _Mismatch(expected)


def _parse_time(value: Any, expected: str) -> _dt.time:
    if isinstance(value, _dt.time):  # from Python callers (custom tools)
        return value
    if not isinstance(value, str):
        raise _Mismatch(expected)
    body, carry = _round_fraction(value.strip())
    if body.lower().endswith((" utc", " gmt")):
        body = body[:-4] + "+00:00"
    try:
        result = _dt.time.fromisoformat(body)
    except ValueError:
        raise _Mismatch(expected) from None
    if carry:
        moment = _dt.datetime.combine(_dt.date(2000, 1, 1), result) + _dt.timedelta(microseconds=1)
        result = moment.timetz() if moment.date() == _dt.date(2000, 1, 1) else result
    return result


def _to_time(value: Any) -> _dt.time:
    return _parse_time(value, "a time of day (e.g. '10:30:00')").replace(tzinfo=None)


def _to_timetz(value: Any) -> _dt.time:
    result = _parse_time(value, "a time with time zone (e.g. '10:30:00+02:00')")
    if result.tzinfo is None:
        result = result.replace(tzinfo=_UTC)
    return result


_INTERVAL_UNITS = (
    r"microseconds?|microsecs?|usecs?|us|milliseconds?|millisecs?|msecs?|ms|seconds?|secs?|s|"
    r"minutes?|mins?|m|hours?|hrs?|hr|h|days?|d|weeks?|w|months?|mons?|years?|yrs?|y|"
    r"decades?|decs?|centuries|century|cent|c|millennia|millennium|millenniums|mils?"
)
_INTERVAL_TOKEN = (
    r"(?:[+-]?[0-9]+:[0-9]+(?::[0-9]+(?:\.[0-9]*)?)?"  # 01:30 / 01:30:00.5
    r"|[+-]?[0-9]+-[0-9]+"  # SQL year-month 1-2
    rf"|(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:\s*(?:{_INTERVAL_UNITS})\b)?"  # 3 days / 3
    r"|@|ago)"
)
_INTERVAL_RE = re.compile(rf"\s*{_INTERVAL_TOKEN}(?:\s*{_INTERVAL_TOKEN})*\s*", re.IGNORECASE)
_INTERVAL_ISO_RE = re.compile(
    r"\s*[+-]?P(?:(?:[0-9.]+Y)?(?:[0-9.]+M)?(?:[0-9.]+W)?(?:[0-9.]+D)?"
    r"(?:T(?:[0-9.]+H)?(?:[0-9.]+M)?(?:[0-9.]+S)?)?"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?)?)\s*",
    re.IGNORECASE,
)
_INTERVAL_INFINITE = {"infinity", "+infinity", "-infinity"}


def _to_interval(value: Any) -> str:
    expected = "an interval (e.g. '1 day 02:00:00', '90 minutes' or ISO 8601 'P1DT2H')"
    if isinstance(value, _dt.timedelta):  # from Python callers (custom tools)
        return _interval_to_text(value)
    if isinstance(value, bool):
        raise _Mismatch(expected)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise _Mismatch(expected)
        return f"{_pg_float_text(float(value)) if isinstance(value, float) else value} seconds"
    if isinstance(value, str):
        text = value.strip()
        if (
            text
            and text.upper() != "P"
            and (
                _INTERVAL_RE.fullmatch(text)
                or _INTERVAL_ISO_RE.fullmatch(text)
                or text.lower() in _INTERVAL_INFINITE
            )
        ):
            return text
    raise _Mismatch(expected)


# --- geometry -------------------------------------------------------------------

_NUMBER_IN_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:Infinity|NaN)")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, str):
        return [float(x) for x in _NUMBER_IN_TEXT.findall(value)]
    flat: list[float] = []

    def walk(item: Any) -> None:
        if isinstance(item, bool):
            raise _Mismatch("numbers")
        if isinstance(item, int | float):
            flat.append(float(item))
        elif isinstance(item, list | tuple):
            for sub in item:
                walk(sub)
        elif isinstance(item, Mapping):
            for key in ("x", "y", "center", "radius", "r"):
                if key in item:
                    walk(item[key])
        else:
            raise _Mismatch("numbers")

    walk(value)
    return flat


def _pairs(numbers: list[float]) -> list[tuple[float, float]]:
    return [(numbers[i], numbers[i + 1]) for i in range(0, len(numbers) - 1, 2)]


def _geometry_converter(name: str) -> _Converter:
    expected = f"a {name} (PostgreSQL text such as '(1,2)' or a JSON array of numbers)"

    def convert(value: Any) -> Any:
        try:
            nums = _numbers(value)
        except _Mismatch:
            raise _Mismatch(expected) from None
        count = len(nums)
        if name == "point" and count == 2:
            return asyncpg.Point(nums[0], nums[1])
        if name == "circle" and count == 3:
            return asyncpg.Circle(asyncpg.Point(nums[0], nums[1]), nums[2])
        if name == "line" and count == 3:
            return asyncpg.Line(nums[0], nums[1], nums[2])
        if name in ("lseg", "box") and count == 4:
            cls = asyncpg.LineSegment if name == "lseg" else asyncpg.Box
            return cls((nums[0], nums[1]), (nums[2], nums[3]))
        if name == "polygon" and count >= 2 and count % 2 == 0:
            return asyncpg.Polygon(*_pairs(nums))
        if name == "path" and count >= 2 and count % 2 == 0:
            closed = not (isinstance(value, str) and value.strip().startswith("["))
            return asyncpg.Path(*_pairs(nums), is_closed=closed)
        raise _Mismatch(expected)

    return convert


# --- containers -----------------------------------------------------------------


def _passthrough(value: Any) -> Any:
    """Value for a type this module does not know: strings as they are, JSON arrays as rows."""
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
    if len(values) != len(param_types):
        raise InvalidInput(_count_message(len(param_types), len(values)))
    out: list[Any] = []
    for position, (value, pg_type) in enumerate(zip(values, param_types, strict=True), 1):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(_param_converter(pg_type)(value))
        except _Mismatch as exc:
            where = f"Parameter ${position}" + (f", element {exc.path}" if exc.path else "")
            detail = f" ({exc.detail})" if exc.detail else ""
            shown = exc.value if exc.has_value else value
            raise InvalidInput(f"{where}: expected {exc.expected}, got {_show(shown)}{detail}") from None
    return out
