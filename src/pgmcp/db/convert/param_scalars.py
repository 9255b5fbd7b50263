"""JSON → Python converters for scalar parameter types other than dates and times.

Numbers, ``boolean``, text, ``json``/``jsonb``, ``bytea``, ``uuid``, ``inet``/
``cidr``, bit strings, ``pg_lsn`` and the geometric types; and
:class:`_Mismatch`, which every converter raises when a value does not fit
(:func:`pgmcp.db.convert.params.convert_params` turns it into ``InvalidInput``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias

import asyncpg
import orjson

from pgmcp.db.convert.values import _pg_float_text, encode_value

_Converter: TypeAlias = Callable[[Any], Any]


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
        if _NUMBER_RE.fullmatch(value):  # the common case first: no special word matches it
            try:
                return Decimal(value)  # surrounding whitespace is Decimal's to drop, as the regex allows
            except InvalidOperation:
                pass
        special = _SPECIAL_NUMERICS.get(value.strip().lower())
        if special is not None:
            return special
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
