"""The catalog layer of the policy on a small hand-made catalog (no database: security/ has no I/O).

What a real catalog does is in ``tests/integration/test_policy_catalog.py`` and the sweep.
"""

from __future__ import annotations

import pytest

from pgmcp.errors import QueryBlocked
from pgmcp.security import Policy
from pgmcp.security.functions import FunctionCatalog

# (name, schema, volatile, nargs, ndefaults, variadic)
CATALOG = FunctionCatalog.from_rows(
    functions=[
        ("now", "pg_catalog", False, 0, 0, False),
        ("lower", "pg_catalog", False, 1, 0, False),
        ("setseed", "pg_catalog", True, 1, 0, False),
        ("random", "pg_catalog", True, 0, 0, False),
        ("mixed", "pg_catalog", False, 1, 0, False),  # an overload that is fine ...
        ("mixed", "public", True, 2, 0, False),  # ... and one that is not
        ("dflt", "public", True, 3, 2, False),  # takes 1 to 3 arguments
        ("vari", "public", True, 2, 0, True),  # takes 1 or more
        ("two_only", "public", True, 2, 0, False),
        ("app_writer", "app", True, 0, 0, False),
        ("app_writer", "public", False, 0, 0, False),
        ("stable_fn", "public", False, 1, 0, False),
    ],
    operators=[("###", "public", "vol_op")],
    casts=[("mood", "public", "int_to_mood")],
    types=["int4", "mood", "text", "odd"],
    inputs=[("odd", "public", "odd_in")],
)
READONLY = Policy(readonly_mode=True)
DEV = Policy()


def refused(policy: Policy, sql: str, **kwargs: object) -> QueryBlocked:
    with pytest.raises(QueryBlocked) as info:
        policy.check(sql, catalog=CATALOG, **kwargs)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("SELECT setseed(0.5)", "setseed"),
        ("SELECT pg_catalog.setseed(0.5)", "setseed"),
        ('SELECT "SETSEED"(0.5)', "setseed"),
        ("SELECT (0.5).setseed", "setseed"),
        ("SELECT x.setseed FROM (SELECT 0.5) AS x(v)", "setseed"),
        ("SELECT mixed(1, 2)", "mixed"),
        ("SELECT dflt(1)", "dflt"),
        ("SELECT (1).dflt", "dflt"),
        ("SELECT vari(1, 2, 3, 4)", "vari"),
        ("SELECT (1).vari", "vari"),
        ("SELECT app.app_writer()", "app_writer"),
        ("SELECT app_writer()", "app_writer"),  # unqualified: any schema's candidate counts
        ("SELECT 1 ### 2", "vol_op"),
        ("SELECT 1 OPERATOR(public.###) 2", "vol_op"),
        ("SELECT 1 WHERE 1 ### ANY (SELECT 1)", "vol_op"),
        ("SELECT 1::mood", "int_to_mood"),
        ("SELECT CAST(1 AS public.mood)", "int_to_mood"),
        ("SELECT ARRAY[1]::mood[]", "int_to_mood"),
        ("SELECT mood(1)", "int_to_mood"),  # a cast written as a call
        ("SELECT lower(name) FROM t ORDER BY setseed(id)", "setseed"),
        ("SELECT count(*) FILTER (WHERE setseed(0) IS NULL) FROM t", "setseed"),
        ("WITH c AS (SELECT (0.1).setseed) SELECT * FROM c", "setseed"),
        ("EXPLAIN ANALYZE SELECT setseed(0)", "setseed"),
    ],
)
def test_volatile_calls_are_refused_on_read_paths_in_every_notation(sql: str, name: str) -> None:
    err = refused(READONLY, sql)
    assert err.reason == "volatile_function"
    assert f"'{name}'" in str(err)
    assert refused(DEV, sql, require_read=True).reason == "volatile_function"  # execute_query


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT now(), lower('X'), random()",  # random: harmless, allow-listed
        "SELECT mixed(1)",  # only the one-argument overload can be meant
        "SELECT two_only(1)",  # no candidate takes one argument: the database refuses it
        "SELECT (1).mixed, (1).stable_fn",
        "SELECT public.app_writer()",  # qualified: only that schema's candidate
        "SELECT t.id, t.name, (t.meta).tier FROM t",  # columns, not functions
        "SELECT 1::int4, 'x'::text, 1 + 2, 'a' || 'b'",
        "EXPLAIN SELECT setseed(0)",  # not run: planning is not calling
    ],
)
def test_calls_the_catalog_says_are_harmless_pass(sql: str) -> None:
    READONLY.check(sql, catalog=CATALOG)


def test_write_paths_may_call_volatile_functions() -> None:
    assert DEV.check("SELECT setseed(0.5)", catalog=CATALOG).is_read
    DEV.check("SELECT 1 ### 2", catalog=CATALOG)


def test_without_a_catalog_only_the_parser_layer_applies() -> None:
    READONLY.check("SELECT setseed(0.5)")
    assert READONLY.check("SELECT unknown_fn(1)", catalog=CATALOG).unknown_functions == {"unknown_fn"}


def test_allowed_and_blocked_functions() -> None:
    policy = Policy(readonly_mode=True, allowed_functions=["SetSeed"], blocked_functions=["public.stable_fn"])
    policy.check("SELECT (0.5).setseed", catalog=CATALOG)
    err = refused(policy, "SELECT stable_fn(1)")
    assert err.reason == "blocked_function"
    assert "BLOCKED_FUNCTIONS" in str(err)
    assert refused(policy, "SELECT (1).stable_fn").reason == "blocked_function"
    # A column named like a blocked function is not refused when the catalog knows better ...
    Policy(blocked_functions=["tier"]).check("SELECT t.tier FROM t", catalog=CATALOG)
    # ... and BLOCKED_FUNCTIONS applies to write paths too.
    with pytest.raises(QueryBlocked):
        Policy(blocked_functions=["stable_fn"]).check("SELECT stable_fn(1)")
    # ALLOWED_FUNCTIONS cannot loosen the always-blocked list.
    with pytest.raises(QueryBlocked) as info:
        Policy(readonly_mode=True, allowed_functions=["pg_read_file"]).check(
            "SELECT ('x'::text).pg_read_file"
        )
    assert info.value.reason == "always_blocked"


def test_a_cached_decision_holds_only_for_the_same_catalog() -> None:
    policy = Policy(readonly_mode=True)
    harmless = FunctionCatalog.from_rows([("f", "public", False, 0, 0, False)])
    volatile = FunctionCatalog.from_rows([("f", "public", True, 0, 0, False)])
    assert harmless.version != volatile.version
    policy.check("SELECT f()", catalog=harmless)
    with pytest.raises(QueryBlocked):
        policy.check("SELECT f()", catalog=volatile)
    policy.check("SELECT f()", catalog=harmless)


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("SELECT x FROM t ORDER BY x USING OPERATOR(public.###)", "vol_op"),
        ("SELECT x FROM t ORDER BY x USING ###", "vol_op"),
        ("SELECT JSON_VALUE(j, '$' RETURNING mood) FROM t", "int_to_mood"),
        ("SELECT * FROM XMLTABLE('/a' PASSING x COLUMNS b mood) x", "int_to_mood"),
        ("SELECT * FROM f() AS (a mood)", "int_to_mood"),
    ],
)
def test_implicit_calls_by_operator_and_type_name_are_judged(sql: str, name: str) -> None:
    assert f"'{name}'" in str(refused(READONLY, sql))


def test_a_string_literal_meets_only_the_input_function() -> None:
    READONLY.check("SELECT 'ok'::mood, CAST('ok' AS mood), mood 'ok', NULL::mood", catalog=CATALOG)
    assert "'int_to_mood'" in str(refused(READONLY, "SELECT 1::mood"))
    assert "'int_to_mood'" in str(refused(READONLY, "SELECT ('o' || 'k')::mood"))
    assert "'odd_in'" in str(refused(READONLY, "SELECT 'x'::odd"))
    assert "'odd_in'" in str(refused(READONLY, "SELECT 1::odd"))
