"""JSON logs on stderr, with secrets removed.

One JSON object per line, always on **stderr**: stdout belongs to the stdio MCP
transport, and one stray line there breaks the client. Every line has
``timestamp`` (ISO 8601, UTC), ``level`` (upper case: ``DEBUG`` … ``CRITICAL``,
so ``jq 'select(.level == "ERROR")'`` works), ``event`` and the bound fields.

Two sources end up in the same renderer:

- pgmcp's own structlog loggers (:func:`get_logger`), filtered by level before
  any work is done, so a disabled ``debug()`` call costs a no-op method call;
- the standard library's :mod:`logging` (uvicorn, the MCP SDK, asyncpg),
  through a handler on the root logger.

Secrets: keys that name a secret (``password``, ``token``, ``authorization`` …)
are dropped, and every string value is passed through
:func:`pgmcp.errors.mask_secrets` (DSN passwords, ``password=…`` pairs and
every registered secret such as ``DB_PASSWORD`` or ``MCP_AUTH_TOKEN``).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from pgmcp.errors import _registered_secrets, mask_secrets

__all__ = ["configure_logging", "emit", "get_logger", "redact", "redact_text"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# structlog method name -> the level written in the line.
_LEVEL_NAMES = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
    "fatal": "CRITICAL",
}
_SECRET_KEYS = ("password", "passwd", "secret", "token", "authorization")
_MAX_DEPTH = 6
_write_lock = threading.Lock()


@functools.lru_cache(maxsize=4096)  # keys are field names: a small, repeating set
def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered.endswith(_SECRET_KEYS) or lowered in {"pwd", "cookie", "set-cookie"}


# SQL's own password literals (CREATE/ALTER ROLE ... PASSWORD '...'), which
# mask_secrets does not know: '...' (with '' escapes), E'...' and $tag$...$tag$.
_SQL_PASSWORD = re.compile(
    r"""(?P<kw>\bPASSWORD\s+)(?:E?'(?:[^'\\]|\\.|'')*'|\$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)?\$)""",
    re.IGNORECASE | re.DOTALL,
)


# Short values (ids, statuses, query types, tool names) repeat in every line:
# remember their redaction. The cache is dropped whenever a secret is registered,
# since a value cached as clean could be that secret.
_short_cache: dict[str, str] = {}
_short_cache_secrets = -1
_SHORT = 64


def redact_text(text: str) -> str:
    """:func:`~pgmcp.errors.mask_secrets` plus SQL ``PASSWORD '...'`` literals, done cheaply.

    ``mask_secrets`` runs two regular expressions (~3 µs a string); most log values
    contain neither ``@``, nor ``pass``/``pwd``, nor a registered secret, so that is
    checked first (and short values are cached). The check must stay in step with
    the patterns of :mod:`pgmcp.errors`. Used for every log value and for the query
    text kept in the history.
    """
    global _short_cache_secrets
    if len(text) > _SHORT:
        return _redact(text)
    if _short_cache_secrets != len(_registered_secrets):
        _short_cache.clear()
        _short_cache_secrets = len(_registered_secrets)
    cached = _short_cache.get(text)
    if cached is None:
        cached = _redact(text)
        if len(_short_cache) < 4096:
            _short_cache[text] = cached
    return cached


def _redact(text: str) -> str:
    lowered = text.lower()
    if "@" in text or "pass" in lowered or "pwd" in lowered:
        text = mask_secrets(text)
        if "password" in lowered:
            text = _SQL_PASSWORD.sub(r"\g<kw>'***'", text)
        return text
    # the live set of pgmcp.errors (mutated in place by register_secret, never rebound)
    for secret in _registered_secrets:
        if secret in text:
            return mask_secrets(text)
    return text


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth >= _MAX_DEPTH or isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {
            k: _clean(v, depth + 1)
            for k, v in value.items()
            if not (isinstance(k, str) and _is_secret_key(k))
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, depth + 1) for v in value]
    return value


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor: drop secret-named keys and mask secrets in every string (nested too)."""
    secret_keys: list[str] = []
    for key, value in event_dict.items():  # values are replaced in place: no resize while iterating
        if _is_secret_key(key):
            secret_keys.append(key)
        elif type(value) is str:
            event_dict[key] = redact_text(value)
        elif value is not None and not isinstance(value, bool | int | float):
            event_dict[key] = _clean(value)
    for key in secret_keys:
        del event_dict[key]
    return event_dict


def _add_level(_logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    event_dict["level"] = _LEVEL_NAMES.get(method, method.upper())
    return event_dict


_second: tuple[int, str] = (-1, "")  # (epoch second, its "YYYY-MM-DDTHH:MM:SS"), replaced atomically


def _add_timestamp(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # ISO 8601 UTC with microseconds, e.g. 2024-05-01T12:00:00.123456Z; the part up
    # to the second is formatted once a second (a fifth of TimeStamper's cost).
    global _second
    now = time.time()
    whole = int(now)
    cached_second, prefix = _second
    if cached_second != whole:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, prefix)
    event_dict["timestamp"] = f"{prefix}.{int((now - whole) * 1_000_000):06d}Z"
    return event_dict


def _fallback(obj: Any) -> str:
    # Objects orjson cannot serialise (Decimal, Path, SecretStr, exceptions ...):
    # their str(), masked, since redact() ran before they were stringified.
    return mask_secrets(str(obj))


def _render(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
    # timestamp, level and event first, so a person reading raw lines finds them.
    line: dict[str, Any] = {
        "timestamp": event_dict.pop("timestamp", None),
        "level": event_dict.pop("level", None),
        "event": event_dict.pop("event", None),
    }
    line.update(event_dict)
    return orjson.dumps(line, default=_fallback, option=orjson.OPT_NON_STR_KEYS).decode()


def _write(line: str) -> None:
    # sys.stderr is looked up at every write, not captured at configure time, so a
    # replaced stderr (pytest's capture, a test harness) gets the lines.
    with _write_lock:
        stream = sys.stderr
        stream.write(line + "\n")
        stream.flush()


class _StderrLogger:
    """structlog's final logger: one rendered line to the current sys.stderr."""

    def msg(self, message: str) -> None:
        _write(message)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _stderr_logger_factory(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


class _JsonHandler(logging.Handler):
    """Root-logger handler: stdlib records (uvicorn, mcp, asyncpg) as the same JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event: MutableMapping[str, Any] = {
                "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
                "level": record.levelname,
                "event": record.getMessage(),
                "logger": record.name,
            }
            if record.exc_info and record.exc_info[0] is not None:
                if record.levelno >= logging.ERROR:
                    event["exception"] = "".join(traceback.format_exception(*record.exc_info))
                else:
                    # A library's warning about a failure it handles (asyncpg retrying a pool's
                    # connections while a database is down): the cause in one field, not a
                    # traceback on every retry.
                    exc = record.exc_info[1]
                    event["error"] = f"{record.exc_info[0].__name__}: {exc}"
            ed = redact(None, record.levelname.lower(), dict(event))
            _write(_render(None, record.levelname.lower(), ed))
        except Exception:  # a broken log line must never break the caller
            self.handleError(record)


def configure_logging(level: str = "INFO") -> None:
    """Send every log line, pgmcp's and the standard library's, to stderr as JSON.

    Call it at start-up; calling it again (tests) re-levels every logger that
    :func:`get_logger` handed out, module-level ones included. ``level`` is
    ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL`` (any case).
    uvicorn must be started with ``log_config=None``, or it re-installs its own
    plain-text handlers.

    Raises:
        ValueError: ``level`` is not one of those names.
    """
    numeric = _LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"Unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    _configure_structlog(numeric)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _JsonHandler):
            root.removeHandler(handler)
    root.addHandler(_JsonHandler())
    root.setLevel(numeric)
    # Libraries that install their own handlers would print twice (or to stdout);
    # let their records reach the root handler only.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "mcp", "asyncpg"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    # asyncssh says at INFO every SSH channel it opens (one per pooled connection through a
    # tunnel); pgmcp's own ssh_tunnel_* events say what matters. DEBUG lets it all through.
    logging.getLogger("asyncssh").setLevel(
        numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    )


_generation = 0  # bumped by every configuration; _Logger rebuilds when it changed
_threshold = logging.INFO  # the configured level, for emit()


def _configure_structlog(numeric: int) -> None:
    global _generation, _threshold
    _threshold = numeric
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_level,
        _add_timestamp,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact,
        _render,
    ]
    structlog.configure(
        processors=processors,
        # Methods below the level are no-ops: a disabled debug() call does no work.
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger_factory,
        context_class=dict,
        cache_logger_on_first_use=False,  # _Logger caches, and notices reconfiguration
    )
    _generation += 1


class _Logger:
    """A named logger that builds its bound logger once per configuration.

    structlog's own first-use cache would freeze a module-level logger with
    whatever configuration was current when it was first used (often before
    ``configure_logging`` ran); this one rebuilds when the configuration changes.
    """

    __slots__ = ("_bound", "_generation", "_name")

    def __init__(self, name: str | None) -> None:
        self._name = name
        self._generation = -1
        self._bound: Any = None

    def _current(self) -> Any:
        if self._generation != _generation:
            initial = {"logger": self._name} if self._name is not None else {}
            self._bound = structlog.get_logger().bind(**initial)
            self._generation = _generation
        return self._bound

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._current(), attr)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A structlog logger; ``name`` (e.g. ``"pgmcp.db"``) is written as the ``logger`` field.

    Safe to create at import time: it follows later :func:`configure_logging`
    calls. If none has run yet, structlog is set up with ``INFO`` on stderr
    (the standard library's logging is left alone), so nothing is ever written
    to stdout by structlog's default configuration. ``.bind(...)`` returns a
    logger fixed to the configuration current at that moment.
    """
    if not structlog.is_configured():
        _configure_structlog(logging.INFO)
    return cast(FilteringBoundLogger, _Logger(name))


def emit(logger: str, level: str, event: str, **fields: Any) -> None:
    """One line as ``get_logger(logger).<level>(event, **fields)`` writes it, for per-call events.

    Same level filter, same shape (``timestamp``, ``level``, ``event``, ``logger``,
    then ``fields``), same redaction (secret-named keys dropped, string values
    masked), but without structlog's processor chain: a fifth of the cost, which
    matters for a line written on every tool call. ``fields`` must be JSON scalars.
    structlog context variables are not merged (pgmcp binds none).
    """
    if _LEVELS[level] < _threshold:
        return
    line: dict[str, Any] = {"timestamp": None, "level": _LEVEL_NAMES[level], "event": event, "logger": logger}
    _add_timestamp(None, level, line)
    for key, value in fields.items():
        if not _is_secret_key(key):
            line[key] = redact_text(value) if type(value) is str else value
    _write(orjson.dumps(line, default=_fallback).decode())
