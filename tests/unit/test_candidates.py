"""Candidate indexes come from the parse tree: filters, joins, ordering, grouping, and nothing else."""

from __future__ import annotations

import pytest
from pglast.parser import ParseError

from pgmcp.intelligence.candidates import TableRef, candidates, column_uses, quote_ident, resolve

ORDERS = TableRef(None, "orders")
CUSTOMERS = TableRef("public", "customers")
COLUMNS = {
    ORDERS: ["id", "customer_id", "status", "total", "order_date", "note"],
    CUSTOMERS: ["id", "email", "name"],
}


def found(query: str) -> set[tuple[str, tuple[str, ...]]]:
    return {(c.table.name, c.columns) for c in candidates(resolve(column_uses(query), COLUMNS))}


def test_an_equality_filter_gives_its_column() -> None:
    assert found("SELECT * FROM orders WHERE customer_id = $1") == {("orders", ("customer_id",))}


def test_equality_then_range_gives_a_composite_in_b_tree_order() -> None:
    got = found("SELECT id FROM orders WHERE total > 100 AND status = 'pending'")
    assert ("orders", ("status", "total")) in got
    assert {("orders", ("status",)), ("orders", ("total",))} <= got


def test_a_join_gives_both_sides_and_aliases_are_resolved() -> None:
    got = found(
        "SELECT c.name FROM orders o JOIN public.customers c ON c.id = o.customer_id WHERE c.email LIKE 'a%'"
    )
    assert {("orders", ("customer_id",)), ("customers", ("id",)), ("customers", ("email",))} <= got


def test_an_unqualified_column_belongs_to_the_one_table_that_has_it() -> None:
    got = found("SELECT 1 FROM orders o, public.customers c WHERE email = $1 AND status = $2")
    assert {("customers", ("email",)), ("orders", ("status",))} <= got


def test_ordering_alone_gives_an_index_on_the_sort_columns() -> None:
    assert found("SELECT * FROM orders ORDER BY order_date DESC LIMIT 10") == {("orders", ("order_date",))}


def test_filters_in_subqueries_and_ctes_count() -> None:
    got = found(
        "WITH recent AS (SELECT * FROM orders WHERE order_date > now() - interval '1 day') "
        "SELECT * FROM public.customers WHERE id IN (SELECT customer_id FROM recent WHERE status = 'x')"
    )
    assert {("orders", ("order_date",)), ("customers", ("id",))} <= got


def test_what_an_index_cannot_serve_gives_nothing() -> None:
    # A leading wildcard, a selected column, an unknown column, a function of the column.
    assert (
        found("SELECT note FROM orders WHERE note LIKE '%x' AND no_such = 1 AND lower(status) = 'a'") == set()
    )


def test_not_sql_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        column_uses("SELEC * FROM orders")


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("orders", "orders"),
        ("order", '"order"'),
        ("Orders", '"Orders"'),
        ('we"ird', '"we""ird"'),
        ("a b", '"a b"'),
    ],
)
def test_identifiers_are_quoted_as_postgresql_quotes_them(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted
