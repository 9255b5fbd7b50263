"""JSON → Python converters for ``date``, ``timestamp[tz]``, ``time[tz]`` and ``interval``.

ISO 8601 and PostgreSQL-style text, the special words (``infinity``, ``now``,
``today`` …), zone names, and rounding of fractions beyond microseconds as
PostgreSQL does. Intervals are only checked here; PostgreSQL parses them.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgmcp.db._driver import INFINITY_DATE as _INF_DATE
from pgmcp.db._driver import INFINITY_DATETIME as _INF_DATETIME
from pgmcp.db._driver import NEGATIVE_INFINITY_DATE as _NEG_INF_DATE
from pgmcp.db._driver import NEGATIVE_INFINITY_DATETIME as _NEG_INF_DATETIME
from pgmcp.db.convert.codecs import _interval_to_text, _pg_days_from_text
from pgmcp.db.convert.param_scalars import _Mismatch
from pgmcp.db.convert.values import _pg_float_text

_UTC = _dt.UTC

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
