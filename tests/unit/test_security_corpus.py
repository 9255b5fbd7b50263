"""The adversarial corpus under the handbook's three security profiles.

Every statement in :mod:`adversarial_corpus` is checked by a policy built the
way ``Policy.from_settings`` builds it for each profile, and must pass or be
refused exactly as the corpus says. A refusal is always a pgmcp error (never a
parser exception or a crash), and anything the read-only profile lets through
is a read.
"""

from __future__ import annotations

import pytest

from pgmcp.config import Settings
from pgmcp.errors import PgMcpError
from pgmcp.security import Policy

from .adversarial_corpus import CORPUS, PROFILES, expected_for

POLICIES = {name: Policy.from_settings(Settings(**values)) for name, values in PROFILES.items()}
CASES = [
    pytest.param(sql, profile, expected_for(expected, profile), id=f"{profile}-{i:03d}-{note[:40]}")
    for i, (sql, expected, note) in enumerate(CORPUS)
    for profile in PROFILES
]


def test_corpus_is_large_and_covers_both_outcomes_in_every_profile() -> None:
    assert len(CORPUS) >= 100
    assert len({sql for sql, _, _ in CORPUS}) == len(CORPUS), "duplicate statements in the corpus"
    for profile in PROFILES:
        outcomes = {expected_for(expected, profile) for _, expected, _ in CORPUS}
        assert outcomes == {"pass", "block"}


@pytest.mark.parametrize(("sql", "profile", "expected"), CASES)
def test_corpus(sql: str, profile: str, expected: str) -> None:
    policy = POLICIES[profile]
    try:
        decision = policy.check(sql)
    except PgMcpError as exc:
        assert expected == "block", f"refused but should pass: {exc}"
        return
    assert expected == "pass", f"passed but should be refused: {decision}"
    if PROFILES[profile]["readonly_mode"]:
        assert decision.is_read


@pytest.mark.parametrize(("sql", "profile", "expected"), CASES)
def test_corpus_is_decided_the_same_from_the_cache(sql: str, profile: str, expected: str) -> None:
    policy = POLICIES[profile]
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(policy.check(sql))
        except PgMcpError as exc:
            outcomes.append((type(exc), str(exc), getattr(exc, "reason", None)))
    assert outcomes[0] == outcomes[1]
