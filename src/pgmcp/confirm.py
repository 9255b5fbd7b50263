"""CONFIRM_WRITES: which writes a person confirms, the preview that counts their rows, the sealed state.

The write tools (``execute_transaction``, ``batch_execute``, a plugin's writes) call
:func:`confirm_transaction` or :func:`confirm_batch` before they run for real:

1. ``CONFIRM_WRITES=never`` (the default), or only reads: nothing to confirm.
2. A preview: the statements run through the one execute path in a transaction that is
   always rolled back (policy, ``statement_timeout`` = QUERY_TIMEOUT), which gives the
   rows each one would affect. A statement the policy or the database refuses fails
   here, as it would for real, and nothing is written.
3. ``always`` asks for every write; ``destructive`` for DELETE, UPDATE, MERGE, TRUNCATE,
   DROP and ALTER, and for any write whose preview touches more than
   CONFIRM_ROWS_THRESHOLD rows.
4. The question goes to the person through the :class:`Asker` the MCP edge put in
   :data:`current_asker` for this call (elicitation, or the 2026-07-28 ``input_required``
   round trip). Accept: the caller runs the statements for real, in a new transaction.
   Decline or cancel: :class:`~pgmcp.errors.Declined`. No way to ask:
   :class:`~pgmcp.errors.ConfirmationRequired` (fail closed).

Whatever the edge hands the client to resume a call later is sealed by :class:`Sealer`
(HMAC-SHA256 over the plan's digest, an expiry and a nonce) and accepted once.

The preview runs the statements: effects outside the transaction's reach are not rolled
back (sequence values, ``dblink``, a trigger that reaches out) — see documentation/SECURITY.md.
No ``mcp`` import here: the edge (elicit.py) owns the protocol.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pgmcp.errors import ConfirmationRequired, Declined, InvalidInput, PgMcpError

if TYPE_CHECKING:
    from pgmcp.db.execute import Executor

__all__ = [
    "DESTRUCTIVE_KINDS",
    "Answer",
    "Asker",
    "Plan",
    "Sealer",
    "cannot_ask",
    "confirm_batch",
    "confirm_transaction",
    "current_asker",
    "needs_confirmation",
]

DESTRUCTIVE_KINDS = frozenset({"DELETE", "UPDATE", "MERGE", "TRUNCATE", "DROP", "ALTER"})

Answer = Literal["accept", "decline", "cancel"]

# Statements whose command tag carries no row count (TRUNCATE empties the whole table).
_NO_ROW_COUNT = frozenset({"TRUNCATE", "DROP", "ALTER", "CREATE", "COMMENT", "GRANT", "REVOKE"})

_MAX_SHOWN = 20  # statements listed in the question; the rest are counted
_MAX_STATEMENT_CHARS = 500


@dataclass(frozen=True, slots=True)
class Plan:
    """The writes a person is asked about: what runs where, and what the preview counted."""

    tool: str
    connection_id: str
    statements: tuple[str, ...]
    counts: tuple[int, ...]
    digest: str
    executions: int | None = None  # batch_execute: parameter rows (the statement runs once per row)
    kinds: tuple[str, ...] = ()  # each statement's leading kind (DDL reports no row count)

    @property
    def total_rows(self) -> int:
        return sum(self.counts)

    def message(self) -> str:
        """The question the person sees: the target connection, each statement and its preview count."""
        lines = [f"{self.tool} on connection '{self.connection_id}' wants to run:"]
        for i, (sql, count) in enumerate(zip(self.statements, self.counts, strict=True)):
            if i == _MAX_SHOWN:
                lines.append(f"... and {len(self.statements) - _MAX_SHOWN} more statements")
                break
            text = " ".join(sql.split())
            if len(text) > _MAX_STATEMENT_CHARS:
                text = text[: _MAX_STATEMENT_CHARS - 1] + "…"
            times = f" ×{self.executions} parameter rows" if self.executions is not None else ""
            kind = self.kinds[i] if i < len(self.kinds) else ""
            outcome = (
                f"{count} rows affected" if kind not in _NO_ROW_COUNT else f"{kind.lower()}: no row count"
            )
            lines.append(f"{i + 1}. {text}{times} — preview: {outcome}")
        lines.append(
            f"Preview total: {self.total_rows} rows (counted in a transaction that was rolled back). "
            "Accept to run it for real."
        )
        return "\n".join(lines)


class Asker(Protocol):
    """How the MCP edge asks the person about a plan (one per tool call)."""

    async def confirm(self, plan: Plan) -> Answer:
        """The person's answer.

        Raises:
            ConfirmationRequired: the client cannot ask anyone.
        """
        ...


#: Set by the MCP edge around each tool call; None (e.g. outside a call) fails closed.
current_asker: ContextVar[Asker | None] = ContextVar("pgmcp_asker", default=None)


def needs_confirmation(mode: str, kinds: set[str], counts: Sequence[int], threshold: int) -> bool:
    """Whether CONFIRM_WRITES ``mode`` wants a person to confirm writes of ``kinds`` touching ``counts`` rows."""
    if mode == "always":
        return True
    if mode != "destructive":
        return False
    return bool(kinds & DESTRUCTIVE_KINDS) or any(c > threshold for c in counts)


def plan_digest(tool: str, connection_id: str, statements: Any) -> str:
    """A stable digest of what would run: a sealed state binds to it."""
    canonical = json.dumps(
        [tool, connection_id, statements], sort_keys=True, default=str, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _write_kinds(
    executor: Executor, connection_id: str, queries: Sequence[str]
) -> tuple[set[str], tuple[str, ...]] | None:
    """Every kind ``queries`` run and each one's leading kind, when any of them writes; else None.

    A statement the policy refuses also gives None (nothing to confirm): the real run
    refuses it with the same error, before anything is written.
    """
    kinds: set[str] = set()
    leading: list[str] = []
    writes = False
    for query in queries:
        try:
            decision = executor.policy.check(query)
        except PgMcpError:
            return None
        kinds |= decision.kinds
        leading.append(decision.query_type)
        writes = writes or not decision.is_read
    return (kinds, tuple(leading)) if writes else None


async def _ask(plan: Plan) -> None:
    asker = current_asker.get()
    if asker is None:
        raise ConfirmationRequired(cannot_ask(plan))
    answer = await asker.confirm(plan)
    if answer != "accept":
        raise Declined(
            f"The user {'declined' if answer == 'decline' else 'cancelled'} the confirmation "
            f"(CONFIRM_WRITES); nothing was run on connection '{plan.connection_id}'"
        )


def cannot_ask(plan: Plan) -> str:
    return (
        f"CONFIRM_WRITES requires a person to confirm this write ({plan.total_rows} rows in the preview), "
        "and this client cannot ask (no elicitation support); nothing was run. "
        "Use a client with elicitation, or have the operator change CONFIRM_WRITES."
    )


async def confirm_transaction(
    executor: Executor,
    connection_id: str,
    items: Sequence[tuple[str, Sequence[Any]]],
    *,
    tool: str = "execute_transaction",
) -> None:
    """Confirm ``items`` with a person when CONFIRM_WRITES asks for it; return to run them.

    Raises:
        Declined: the person said no (nothing ran).
        ConfirmationRequired: nobody can be asked (nothing ran).
        PgMcpError: the preview failed as the real run would have (nothing was written).
    """
    mode = executor.settings.confirm_writes
    if mode == "never":
        return
    found = _write_kinds(executor, connection_id, [q for q, _ in items])
    if found is None:
        return
    kinds, leading = found
    preview = await executor.transaction(connection_id, items, tool=f"{tool} (preview)", rollback=True)
    counts = tuple(int(r.get("row_count", 0)) for r in preview.results)
    if not needs_confirmation(mode, kinds, counts, executor.settings.confirm_rows_threshold):
        return
    statements = [[q, list(p)] for q, p in items]
    plan = Plan(
        tool=tool,
        connection_id=connection_id,
        statements=tuple(q for q, _ in items),
        counts=counts,
        digest=plan_digest(tool, connection_id, statements),
        kinds=leading,
    )
    await _ask(plan)


async def confirm_batch(
    executor: Executor,
    connection_id: str,
    query: str,
    params_list: Sequence[Sequence[Any]],
    *,
    tool: str = "batch_execute",
) -> None:
    """:func:`confirm_transaction` for one statement run once per parameter row (same raises)."""
    mode = executor.settings.confirm_writes
    if mode == "never":
        return
    found = _write_kinds(executor, connection_id, [query])
    if found is None:
        return
    kinds, leading = found
    preview = await executor.batch(connection_id, query, params_list, tool=f"{tool} (preview)", rollback=True)
    counts = (preview.rows_affected,)
    if not needs_confirmation(mode, kinds, counts, executor.settings.confirm_rows_threshold):
        return
    plan = Plan(
        tool=tool,
        connection_id=connection_id,
        statements=(query,),
        counts=counts,
        digest=plan_digest(tool, connection_id, [query, [list(p) for p in params_list]]),
        executions=len(params_list),
        kinds=leading,
    )
    await _ask(plan)


class Sealer:
    """HMAC-sealed, single-use, expiring tokens bound to a plan's digest.

    The key is random per process unless given: a token minted by another process (or
    before a restart) is refused, which fails closed (the person is asked again).
    """

    def __init__(self, key: bytes | None = None, *, ttl: float = 600.0) -> None:
        self._key = key or secrets.token_bytes(32)
        self._ttl = ttl
        self._used: dict[str, float] = {}  # nonce -> expiry

    def seal(self, plan: Plan) -> str:
        body = {"d": plan.digest, "n": secrets.token_urlsafe(16), "e": time.time() + self._ttl}
        raw = json.dumps(body, separators=(",", ":")).encode()
        mac = hmac.new(self._key, raw, hashlib.sha256).digest()
        return f"{_b64(raw)}.{_b64(mac)}"

    def open(self, token: str, plan: Plan) -> None:
        """Accept ``token`` once, for this very plan.

        Raises:
            InvalidInput: forged, altered, expired, already used, or minted for other statements.
        """
        try:
            raw_part, mac_part = token.split(".", 1)
            raw, mac = _unb64(raw_part), _unb64(mac_part)
        except ValueError:
            raise InvalidInput(_BAD_STATE) from None
        if not hmac.compare_digest(mac, hmac.new(self._key, raw, hashlib.sha256).digest()):
            raise InvalidInput(_BAD_STATE)
        body = json.loads(raw)
        now = time.time()
        self._used = {n: e for n, e in self._used.items() if e > now}
        if body.get("d") != plan.digest or not body.get("e", 0) > now or body.get("n") in self._used:
            raise InvalidInput(_BAD_STATE)
        self._used[str(body["n"])] = float(body["e"])


_BAD_STATE = (
    "The confirmation state is invalid, expired, already used or for other statements; "
    "call the tool again to be asked anew"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("bad base64") from exc
