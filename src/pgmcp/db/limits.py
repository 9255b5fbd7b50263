"""``MAX_CONNECTIONS``: a cap on the connections actually open, across every pool.

A pool's ``pool_size`` is only its own ceiling: pools open empty and grow on
demand, so the handbook's three pools of 10 fit under a cap of 20 as long as
no more than 20 connections are busy at once.

- Every connection a pool opens goes through :meth:`ConnectionLimiter.connector`
  (asyncpg's ``connect=`` hook), which first takes a slot, and gives it back
  when the connection closes, however it closes (a termination listener:
  ``close``, ``terminate``, a lost socket, asyncpg's idle timeout).
- With every slot taken, the opener waits in line. The registry is asked to
  make room (``make_room``): it closes an idle connection of some pool (one
  parked in asyncpg's pool or a warm one), whose slot then goes to the first
  in line. A call that returns its connection while others wait closes it too,
  so the waiters get slots as soon as any call ends.
- The wait is bounded by the caller's ``CONNECTION_TIMEOUT``: the caller sees
  its ``TimeoutError`` and, through :func:`watch`, whether the time went into
  waiting for a slot (then it is ``limit_exceeded`` naming ``MAX_CONNECTIONS``
  and what holds the connections) or into connecting (``connection_failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from pgmcp.logs import get_logger

__all__ = ["ConnectionLimiter", "SlotWait", "watch"]


log = get_logger("pgmcp.db")


@dataclass
class SlotWait:
    """Set by the limiter when the caller's time went into waiting for a free slot."""

    for_slot: bool = False


_current: contextvars.ContextVar[SlotWait | None] = contextvars.ContextVar("pgmcp_slot_wait", default=None)


@contextlib.contextmanager
def watch() -> Iterator[SlotWait]:
    """Record, for the connection attempts made inside, whether one waited for a slot."""
    state = SlotWait()
    token = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(token)


class ConnectionLimiter:
    """Counts the open connections of every pool and keeps them at or below ``max_connections``."""

    def __init__(self, max_connections: int, make_room: Callable[[], bool]) -> None:
        self.max_connections = max_connections
        self._make_room = make_room
        self._total = 0  # open connections plus those being opened
        self._by_pool: Counter[str] = Counter()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._waiting_by_pool: Counter[str] = Counter()
        self._waiting = 0  # sum of _waiting_by_pool: read on every release, so kept, not summed

    @property
    def open(self) -> int:
        """Connections open or being opened, all pools together."""
        return self._total

    @property
    def full(self) -> bool:
        return self._total >= self.max_connections

    @property
    def waiting(self) -> int:
        """Connection attempts waiting for a slot."""
        return self._waiting

    def waiting_for(self, connection_id: str) -> int:
        return self._waiting_by_pool[connection_id]

    def holders(self) -> dict[str, int]:
        """Open connections by connection id, largest first."""
        return dict(self._by_pool.most_common())

    def connector(
        self, connection_id: str, inner: Callable[..., Awaitable[Any]] | None = None
    ) -> Callable[..., Awaitable[Any]]:
        """asyncpg's ``connect=`` hook for the pool of ``connection_id``; ``inner`` (e.g. an SSH
        tunnel's) opens the connection once a slot is taken, ``asyncpg.connect`` by default."""
        opener = inner if inner is not None else asyncpg.connect

        async def connect(*args: Any, **kwargs: Any) -> Any:
            await self._take(connection_id)
            try:
                con = await opener(*args, **kwargs)
            except BaseException:
                self._give_back(connection_id)
                raise
            con.add_termination_listener(lambda _con: self._give_back(connection_id))
            return con

        return connect

    async def _take(self, connection_id: str) -> None:
        if self._total < self.max_connections and not self._pending():
            self._total += 1
            self._by_pool[connection_id] += 1
            return
        state = _current.get()
        if state is not None:
            state.for_slot = True
        if not self._waiting:  # once per episode, not once per waiting call
            log.warning(
                "max_connections_reached",
                connection_id=connection_id,
                max_connections=self.max_connections,
                holders=self.holders(),
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._waiting_by_pool[connection_id] += 1
        self._waiting += 1
        try:
            # Closing an idle connection frees its slot a moment later (its termination
            # listener runs on the next loop iteration) and hands it to the first in line.
            self._make_room()
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self._pass_slot()  # handed over just as the caller gave up: pass it on
            raise
        finally:
            self._waiting -= 1
            self._waiting_by_pool[connection_id] -= 1
            if not self._waiting_by_pool[connection_id]:
                del self._waiting_by_pool[connection_id]
        self._by_pool[connection_id] += 1  # the slot came with the handover; _total is unchanged
        if state is not None:
            state.for_slot = False  # from here on the time goes into connecting

    def _pending(self) -> bool:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        return bool(self._waiters)

    def _give_back(self, connection_id: str) -> None:
        self._by_pool[connection_id] -= 1
        if self._by_pool[connection_id] <= 0:
            del self._by_pool[connection_id]
        self._pass_slot()

    def _pass_slot(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self._total -= 1
