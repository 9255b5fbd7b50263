"""Start-up's objects are frozen out of the garbage collector's way before serving.

A full collection in the serving process walked every module, class and pydantic
model start-up built (110-135 ms each time), and a large request such as a
10,000-row batch set one off every few calls; frozen, they are skipped
(benchmarks/README.md).
"""

from __future__ import annotations

import gc

import pgmcp.server  # noqa: F401  (start-up's imports: the SDK, pydantic models)
from pgmcp import cli


def test_settling_the_heap_freezes_what_start_up_built() -> None:
    gc.unfreeze()
    try:
        before = gc.get_freeze_count()
        cli._settle_heap()
        frozen = gc.get_freeze_count()
        assert frozen > before + 50_000, frozen
        # What a full collection still walks afterwards: only what was made since.
        assert len(gc.get_objects(generation=2)) < frozen // 10
    finally:
        gc.unfreeze()
