"""The query policy: parse with PostgreSQL's own grammar, classify, decide. No I/O.

Every statement a tool is about to send is first given to :meth:`Policy.check`.
It is parsed by libpg_query (through :mod:`pglast`) and refused with a
:class:`~pgmcp.errors.QueryBlocked` (whose ``reason`` is a metric label) or
allowed with a :class:`Decision` that says what kind of statement it is and
whether it can change data. No decision comes from regular expressions or
substring search on the text: only the parse tree and the scanner's tokens
decide (one byte search merely skips running the scanner when no blocked word
can be a token, see :func:`~pgmcp.security.keywords.could_be_keyword`).

Checks run in this order, so that messages are predictable (SPEC §4):

1. **Length** — longer than ``MAX_QUERY_LENGTH`` characters: :class:`LimitExceeded`,
   before any parsing. A NUL character or a lone surrogate is :class:`InvalidInput`
   (libpg_query would silently stop reading at a NUL).
2. **Parse** — a syntax error is :class:`DatabaseError` with PostgreSQL's own
   message (``syntax error at or near "SELEC"``) and SQLSTATE ``42601``. A
   statement nested more than ~1000 levels deep cannot be checked and is refused
   (``too_complex``).
3. **Exactly one statement** — ``empty`` / ``multi_statement``. ``SELECT 1;;``
   is one statement; ``SELECT 1; COMMIT; DROP TABLE t`` is three and is refused
   before anything else is looked at (the classic way to end a READ ONLY wrapper).
4. **Always blocked** (``always_blocked``), whatever the lists say — see
   :mod:`pgmcp.security.always_blocked` for what, and why — in every notation
   (attribute notation ``(x).f`` included, :mod:`pgmcp.security.calls`); then
   ``BLOCKED_FUNCTIONS`` (``blocked_function``) on every path.
5. **BLOCKED_KEYWORDS** (``blocked_keyword``) — the statement, or any statement
   nested in it (CTE, EXPLAIN target, rule action, ...), is of a listed kind, or
   a listed word is an SQL *keyword token* of the scanner. A word inside a string
   literal, a quoted identifier or a comment is not a keyword token: ``SELECT 'DROP'``,
   ``SELECT "drop" FROM t`` and a column ``drop_log`` pass. An unquoted column
   literally named ``drop`` *is* the keyword token DROP (quote it to use it).
6. **Read-only** — ``READONLY_MODE`` or ``check(readonly=True)`` (a read-only
   connection) admit only read statements (``readonly``); ``check(require_read=True)``
   (``execute_query``) refuses a write and names the tool to use instead
   (``read_only_tool``). On those read paths (and ``EXPLAIN`` of a read), with the
   target database's catalog given to :meth:`Policy.check`, only functions that
   are not ``VOLATILE`` pass, plus a short allow-list and ``ALLOWED_FUNCTIONS``
   (``volatile_function``, :mod:`pgmcp.security.functions`).
7. **ALLOWED_OPERATIONS** (``operation_not_allowed``) — every kind in
   :attr:`Decision.kinds` must be listed.
8. **Rules** — ``SENSITIVE_TABLES`` (warn or block, ``sensitive_table``),
   ``REQUIRE_LIMIT_FOR_SELECT_STAR`` (``select_star_without_limit``), then custom
   rules added with :meth:`Policy.add_rule` (``custom_rule``).

How statements are classified into kinds, and read told from write, is written
down in :mod:`pgmcp.security.tree`.

What this layer cannot see
--------------------------
* The body of a user-defined function, procedure, trigger or operator in a
  procedural language (plpgsql ``EXECUTE`` of a built string in particular):
  what it does is the database's business — privileges, and the READ ONLY
  transaction the server runs reads in. CREATE is not allowed by any of the
  handbook's profiles, which is what closes "define a function, then call it".
* Objects reached through names in strings (``'users'::regclass``,
  ``table_to_xml('users', ...)``): :attr:`Decision.tables` lists only relations
  the grammar names, and scopes are not resolved (a CTE named like a table counts).
* The parser assumes ``standard_conforming_strings = on`` (PostgreSQL's default).
  With it off, ``SELECT 'a\\' , ' , pg_ls_dir($$.$$) --'`` is two string literals
  here and a call of ``pg_ls_dir`` for the server: the database layer must
  connect with ``standard_conforming_strings=on`` in the startup packet
  (``server_settings``), which neither ``ALTER ROLE/DATABASE ... SET`` nor
  ``RESET ALL`` undo, and callers cannot change (SET, ``set_config`` and writes
  to ``pg_settings`` are refused here).
* The grammar is PostgreSQL 18's; something may parse here and be refused by an
  older server: that is the server's ``database_error``.

Layers, and what each guarantees
--------------------------------
1. **This package** (before anything reaches the database): one statement; no
   transaction control, session state, server files, programs, other servers
   or other sessions, as :mod:`~pgmcp.security.always_blocked` lists, however a
   function is called; kinds and keywords as configured; reads told from writes —
   ``is_read`` means the statement itself changes nothing, apart from what
   user-defined function bodies do; on read paths, no function the database's own
   catalog calls ``VOLATILE`` (functions mislabelled ``IMMUTABLE``/``STABLE``, views,
   triggers and defaults are the role's business).
2. **The READ ONLY transaction** every read runs in (the database layer): stops
   writes from anywhere, including function bodies this package cannot see — but
   not what READ ONLY lets through (``set_config``, advisory locks,
   ``pg_terminate_backend``, dblink ...), which is why layer 1 blocks those.
3. **statement_timeout and the row cap** (the database layer): bound the time
   and memory any statement, allowed or not, can take.
4. **Privileges** of the database role: the last word on everything.

``tests/integration/test_policy_readonly_property.py`` checks layers 1 and 2
together and layer 1 alone on a real PostgreSQL.

Modules
-------
Only the names in ``__all__`` are public; the modules are internal, and each
imports only modules listed after it:

* :mod:`~pgmcp.security.policy` — :class:`Policy` (settings, the order of checks
  above, the cache, custom rules) and the types it answers with;
* :mod:`~pgmcp.security.analysis` — parse one query and gather the facts the
  policy decides on, or the refusal that comes first (steps 2 and 3);
* :mod:`~pgmcp.security.functions` — :class:`FunctionCatalog` (plain data loaded by
  :mod:`pgmcp.db.catalog`) and the judgement of calls by it (steps 4 and 6);
* :mod:`~pgmcp.security.always_blocked` — what is refused whatever the settings
  say, and why (step 4);
* :mod:`~pgmcp.security.calls` — every way a statement calls a function: direct
  calls, attribute notation, operators, casts;
* :mod:`~pgmcp.security.keywords` — keyword tokens of PostgreSQL's scanner (step 5);
* :mod:`~pgmcp.security.tree` — the walk over a parse tree; kinds; reads and writes.
"""

from __future__ import annotations

from pgmcp.security.functions import FunctionCatalog
from pgmcp.security.policy import Decision, Policy, Risk, Rule

__all__ = ["Decision", "FunctionCatalog", "Policy", "Risk", "Rule"]
