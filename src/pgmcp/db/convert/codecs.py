"""The codecs every pooled connection gets, and asyncpg's ±infinity objects.

:func:`setup_connection_codecs` installs ``interval`` as PostgreSQL's text and
a ``date`` codec that stores a real ``9999-12-31`` as that date and reads dates
outside years 1..9999 as PostgreSQL's text (see the package docstring for why).
The encoders and parameter converters rely on both, and on the identity of
asyncpg's infinity objects defined here.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

import asyncpg

from pgmcp.db._driver import INFINITY_DATE as _INF_DATE
from pgmcp.db._driver import NEGATIVE_INFINITY_DATE as _NEG_INF_DATE
from pgmcp.db._driver import add_text_codec


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


# The pseudo-types of pg_type (fixed OIDs) that asyncpg treats as arrays or ranges without
# knowing an element type: read as text. (anyelement, record, void … it decodes already.)
_PSEUDO_AS_TEXT = (
    (2277, "anyarray"),
    (3831, "anyrange"),
    (4537, "anymultirange"),
    (4538, "anycompatiblemultirange"),
    (5078, "anycompatiblearray"),
    (5080, "anycompatiblerange"),
)


async def setup_connection_codecs(conn: asyncpg.Connection) -> None:
    """Install the codecs this package relies on; call it from the pool's ``init=``.

    * ``interval`` travels as PostgreSQL's text (decoded to ``str``, encoded
      from ``str`` or ``timedelta``), so months and days survive.
    * ``date`` keeps asyncpg's values (``datetime.date``; its ``date.max``-like
      objects for ±infinity) with two fixes: a real ``9999-12-31`` parameter is
      stored as that date, not as ``infinity``, and a date outside years
      1..9999 (``'0044-03-15 BC'``, ``'10000-01-01'``) is read as PostgreSQL's
      text instead of failing the whole fetch.
    * the polymorphic pseudo-types a column can have (``anyarray`` in ``pg_stats``,
      ``pg_stats_ext``; ``anyrange`` …) come back as PostgreSQL's text: asyncpg has no
      codec for them and would fail the whole statement (``could not resolve query result
      types``). Their OIDs are fixed in every PostgreSQL, so no catalog round trip is needed.
    """
    for oid, name in _PSEUDO_AS_TEXT:
        add_text_codec(conn, oid, name, str, _text_identity)
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
