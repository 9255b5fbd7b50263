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
* text-like types (and enums, and types this package does not know): strings as
  they are; numbers and booleans as their text (``123`` → ``'123'``); objects
  and arrays as JSON text.
* arrays: JSON arrays, element by element (nested arrays for several
  dimensions); ranges: ``{"lower", "upper", "lower_inc", "upper_inc"}``,
  ``[lower, upper]`` (``[)``) or PostgreSQL's text (``"[1,5)"``);
  composite types: a JSON array of the fields or an object by field name.

Layout, by concern: :mod:`~pgmcp.db.convert.codecs` (the connection codecs),
:mod:`~pgmcp.db.convert.values` (value encoders, :func:`encode_value`),
:mod:`~pgmcp.db.convert.rows` (column names and info, row encoders),
:mod:`~pgmcp.db.convert.params` (:func:`convert_params`, with the scalar
converters in :mod:`~pgmcp.db.convert.param_scalars` and the date/time ones in
:mod:`~pgmcp.db.convert.param_times`). Import from this package, not from them.
"""

from __future__ import annotations

from pgmcp.db.convert.codecs import setup_connection_codecs
from pgmcp.db.convert.params import convert_params, params_converter, rows_converter
from pgmcp.db.convert.rows import RowEncoder as RowEncoder
from pgmcp.db.convert.rows import _build_row_encoder as _build_row_encoder  # benchmarks/bench_convert.py
from pgmcp.db.convert.rows import column_info, column_names, make_row_encoder
from pgmcp.db.convert.values import MAX_SAFE_INTEGER as MAX_SAFE_INTEGER
from pgmcp.db.convert.values import JsonValue, encode_value

__all__ = [
    "JsonValue",
    "column_info",
    "column_names",
    "convert_params",
    "params_converter",
    "rows_converter",
    "encode_value",
    "make_row_encoder",
    "setup_connection_codecs",
]
