"""The limiter's bookkeeping: slots are handed over in order and never lost or doubled.

(Its effect on real pools, seen from pg_stat_activity, is tests/integration/test_connection_cap.py.)
"""

from __future__ import annotations

import asyncio

from pgmcp.db.limits import ConnectionLimiter, watch


async def test_slots_go_to_waiters_first_come_first_served_and_the_count_never_exceeds_the_cap() -> None:
    asked: list[int] = []

    def make_room() -> bool:
        asked.append(1)
        return False  # nothing idle to close: the waiters wait for a give-back

    limiter = ConnectionLimiter(2, make_room=make_room)
    await limiter._take("a")
    await limiter._take("b")
    assert limiter.open == 2 and limiter.full
    order: list[str] = []

    async def wait(cid: str) -> None:
        with watch() as state:
            await limiter._take(cid)
            assert state.for_slot is False  # once the slot is there, the time goes into connecting
        order.append(cid)

    waiters = [asyncio.create_task(wait(cid)) for cid in ("c", "d")]
    await asyncio.sleep(0)
    assert limiter.waiting == 2 and limiter.waiting_for("c") == 1
    assert len(asked) == 2, "each waiter asks the registry to make room"
    limiter._give_back("a")
    await asyncio.sleep(0)
    assert order == ["c"] and limiter.open == 2
    limiter._give_back("b")
    await asyncio.gather(*waiters)
    assert order == ["c", "d"] and limiter.open == 2 and limiter.waiting == 0
    assert limiter.holders() == {"c": 1, "d": 1}
    limiter._give_back("c")
    limiter._give_back("d")
    assert limiter.open == 0 and limiter.holders() == {}


async def test_a_waiter_that_gives_up_passes_its_place_on_and_records_why_it_waited() -> None:
    limiter = ConnectionLimiter(1, make_room=lambda: False)
    await limiter._take("a")
    states = []

    async def wait(cid: str) -> None:
        with watch() as state:
            states.append(state)
            await limiter._take(cid)

    quitter = asyncio.create_task(wait("b"))
    patient = asyncio.create_task(wait("c"))
    await asyncio.sleep(0)
    quitter.cancel()
    await asyncio.sleep(0)
    assert states[0].for_slot is True, "a caller that timed out must know it waited for a slot"
    limiter._give_back("a")
    await asyncio.wait_for(patient, 1)
    assert limiter.open == 1 and limiter.holders() == {"c": 1}


async def test_a_slot_handed_over_just_as_the_waiter_is_cancelled_is_not_lost() -> None:
    limiter = ConnectionLimiter(1, make_room=lambda: False)
    await limiter._take("a")
    waiter = asyncio.create_task(limiter._take("b"))
    await asyncio.sleep(0)
    limiter._give_back("a")  # the slot is now b's ...
    waiter.cancel()  # ... but b gives up before it runs
    await asyncio.gather(waiter, return_exceptions=True)
    assert limiter.open == 0, "the slot must go back, not leak"
    await asyncio.wait_for(limiter._take("c"), 1)
    assert limiter.open == 1
