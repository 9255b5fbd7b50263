"""confirm.py without a database: which writes are asked about, the question, and the sealed state."""

from __future__ import annotations

import pytest

from pgmcp.confirm import Plan, Sealer, needs_confirmation, plan_digest
from pgmcp.errors import InvalidInput


def plan(
    statements: tuple[str, ...] = ("DELETE FROM t WHERE id = $1",), counts: tuple[int, ...] = (3,)
) -> Plan:
    return Plan(
        tool="execute_transaction",
        connection_id="default",
        statements=statements,
        counts=counts,
        digest=plan_digest("execute_transaction", "default", [[s, []] for s in statements]),
    )


@pytest.mark.parametrize(
    ("mode", "kinds", "counts", "asked"),
    [
        ("never", {"DELETE"}, [1], False),
        ("always", {"INSERT"}, [0], True),
        ("destructive", {"INSERT"}, [10], False),
        ("destructive", {"INSERT"}, [11], True),
        ("destructive", {"DELETE"}, [0], True),
        ("destructive", {"UPDATE"}, [0], True),
        ("destructive", {"MERGE"}, [0], True),
        ("destructive", {"TRUNCATE"}, [0], True),
        ("destructive", {"DROP"}, [0], True),
        ("destructive", {"ALTER"}, [0], True),
        ("destructive", {"INSERT", "WITH"}, [5, 5], False),
    ],
)
def test_which_writes_are_confirmed(mode: str, kinds: set[str], counts: list[int], asked: bool) -> None:
    assert needs_confirmation(mode, kinds, counts, threshold=10) is asked


def test_the_question_names_connection_statements_and_counts() -> None:
    message = plan(("DELETE FROM t WHERE id = $1", "UPDATE u SET x = 1"), (3, 7)).message()
    assert "'default'" in message
    assert "1. DELETE FROM t WHERE id = $1 — preview: 3 rows affected" in message
    assert "2. UPDATE u SET x = 1 — preview: 7 rows affected" in message
    assert "Preview total: 10 rows" in message


def test_a_sealed_state_opens_once_for_its_plan_only() -> None:
    sealer = Sealer()
    token = sealer.seal(plan())
    with pytest.raises(InvalidInput):
        sealer.open(token, plan(("DELETE FROM t",)))  # other statements
    sealer.open(token, plan())
    with pytest.raises(InvalidInput):
        sealer.open(token, plan())  # replayed


def test_a_forged_or_foreign_or_expired_state_is_refused() -> None:
    sealer = Sealer()
    token = sealer.seal(plan())
    body, mac = token.split(".")
    for bad in (f"{body}.{mac[:-2]}AA", f"{body[:-2]}AA.{mac}", "garbage", "", "a.b.c"):
        with pytest.raises(InvalidInput):
            sealer.open(bad, plan())
    with pytest.raises(InvalidInput):
        Sealer().open(token, plan())  # another process's key
    expired = Sealer(ttl=-1)
    with pytest.raises(InvalidInput):
        expired.open(expired.seal(plan()), plan())
