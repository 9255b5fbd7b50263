"""CONFIRM_WRITES through the official Python client: a person confirms writes, or nothing runs.

Both protocol eras: a 2025-era session (handshake; the server sends elicitation/create
mid-call) and 2026-07-28 requests (the server answers input_required; the client asks
and calls again with the answer and the sealed state).
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import ElicitResult, InputRequiredResult

from pgmcp.app import open_app
from pgmcp.server import build_server
from tests.conftest import PgServer
from tests.integration.harness import call_err, call_ok, payload, settings_for
from tests.integration.proc import PGMCP, pgmcp_env, serve_http

MODES = ["legacy", "2026-07-28"]


@pytest.fixture
async def db(module_db: PgServer) -> AsyncIterator[PgServer]:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS accounts; CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);"
            "INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g"
        )
        yield module_db
    finally:
        await conn.close()


async def rows(db: PgServer) -> list[tuple[int, int]]:
    conn = await asyncpg.connect(db.dsn())
    try:
        return [tuple(r) for r in await conn.fetch("SELECT id, balance FROM accounts ORDER BY id")]
    finally:
        await conn.close()


class Person:
    """An elicitation callback that answers ``action`` and remembers what it was shown."""

    def __init__(self, action: str, content: dict[str, Any] | None = None) -> None:
        self.action = action
        self.content = content if content is not None else ({"confirm": True} if action == "accept" else None)
        self.messages: list[str] = []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.messages.append(params.message)
        return ElicitResult(action=self.action, content=self.content)  # type: ignore[arg-type]


@asynccontextmanager
async def serving(db: PgServer, mode: str, person: Person | None, **settings: Any) -> AsyncIterator[Client]:
    values = {"confirm_writes": "destructive", **settings}
    async with (
        open_app(settings_for(db, **values)) as app,
        Client(build_server(app), mode=mode, elicitation_callback=person) as client,  # type: ignore[arg-type]
    ):
        yield client


UPDATE = {"query": "UPDATE accounts SET balance = balance - 10 WHERE id <= $1", "params": [3]}


@pytest.mark.parametrize("mode", MODES)
async def test_an_accepted_confirmation_writes_and_the_person_saw_statement_and_row_count(
    db: PgServer, mode: str
) -> None:
    person = Person("accept")
    async with serving(db, mode, person) as client:
        data = await call_ok(client, "execute_transaction", connection_id="default", queries=[UPDATE])
    assert data["results"][0]["row_count"] == 3
    assert (await rows(db))[:4] == [(1, 90), (2, 90), (3, 90), (4, 100)]
    assert len(person.messages) == 1
    message = person.messages[0]
    assert "UPDATE accounts SET balance = balance - 10 WHERE id <= $1" in message
    assert "3 rows" in message
    assert "'default'" in message


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_a_declined_confirmation_leaves_the_database_exactly_as_before(
    db: PgServer, mode: str, action: str
) -> None:
    before = await rows(db)
    person = Person(action)
    async with serving(db, mode, person) as client:
        await call_err(client, "execute_transaction", "declined", connection_id="default", queries=[UPDATE])
        await call_err(
            client,
            "batch_execute",
            "declined",
            connection_id="default",
            query="DELETE FROM accounts WHERE id = $1",
            params_list=[[1], [2]],
        )
    assert await rows(db) == before
    assert len(person.messages) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_accepting_with_the_box_unchecked_declines(db: PgServer, mode: str) -> None:
    before = await rows(db)
    async with serving(db, mode, Person("accept", {"confirm": False})) as client:
        await call_err(client, "execute_transaction", "declined", connection_id="default", queries=[UPDATE])
    assert await rows(db) == before


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_elicitation_gets_confirmation_required_and_nothing_is_written(
    db: PgServer, mode: str
) -> None:
    before = await rows(db)
    async with serving(db, mode, None) as client:
        data = await call_err(
            client, "execute_transaction", "confirmation_required", connection_id="default", queries=[UPDATE]
        )
        await call_err(
            client,
            "batch_execute",
            "confirmation_required",
            connection_id="default",
            query="DELETE FROM accounts WHERE id = $1",
            params_list=[[1]],
        )
    assert "CONFIRM_WRITES" in data["error"]
    assert await rows(db) == before


@pytest.mark.parametrize("mode", MODES)
async def test_destructive_lets_small_inserts_and_reads_through_without_asking(
    db: PgServer, mode: str
) -> None:
    person = Person("decline")
    async with serving(db, mode, person, confirm_rows_threshold=5) as client:
        await call_ok(
            client,
            "batch_execute",
            connection_id="default",
            query="INSERT INTO accounts VALUES ($1, 0)",
            params_list=[[11], [12]],
        )
        await call_ok(client, "execute_transaction", connection_id="default", queries=[{"query": "SELECT 1"}])
        # Above the threshold, an INSERT is asked about too.
        await call_err(
            client,
            "batch_execute",
            "declined",
            connection_id="default",
            query="INSERT INTO accounts VALUES ($1, 0)",
            params_list=[[i] for i in range(20, 30)],
        )
    assert person.messages and "10 rows" in person.messages[0]
    assert [r[0] for r in await rows(db)][-2:] == [11, 12]


@pytest.mark.parametrize("mode", MODES)
async def test_always_asks_for_every_write(db: PgServer, mode: str) -> None:
    person = Person("decline")
    async with serving(db, mode, person, confirm_writes="always") as client:
        await call_err(
            client,
            "execute_transaction",
            "declined",
            connection_id="default",
            queries=[{"query": "INSERT INTO accounts VALUES (50, 0)"}],
        )
    assert len(await rows(db)) == 10


@pytest.mark.parametrize("mode", MODES)
async def test_truncate_is_asked_about_and_a_declined_one_leaves_the_rows(db: PgServer, mode: str) -> None:
    person = Person("decline")
    policy = {"allowed_operations": "SELECT,INSERT,UPDATE,DELETE,TRUNCATE", "blocked_keywords": ""}
    async with serving(db, mode, person, **policy) as client:
        await call_err(
            client,
            "execute_transaction",
            "declined",
            connection_id="default",
            queries=[{"query": "TRUNCATE accounts"}],
        )
    assert len(await rows(db)) == 10
    assert "TRUNCATE accounts — preview: truncate: no row count" in person.messages[0]


@pytest.mark.parametrize("mode", MODES)
async def test_a_preview_that_fails_asks_nothing_and_reports_the_failure(db: PgServer, mode: str) -> None:
    person = Person("accept")
    async with serving(db, mode, person) as client:
        data = await call_err(
            client,
            "execute_transaction",
            "database_error",
            connection_id="default",
            queries=[UPDATE, {"query": "UPDATE accounts SET id = 1 WHERE id = 2"}],
        )
    assert data["failed_index"] == 1
    assert person.messages == []
    assert await rows(db) == [(i, 100) for i in range(1, 11)]


async def test_the_sealed_state_is_single_use_and_bound_to_the_statements(db: PgServer) -> None:
    """2026-07-28, driven by hand: the state answers once, for the statements it was minted for."""
    async with open_app(settings_for(db, confirm_writes="destructive")) as app:
        server = build_server(app)
        async with Client(server, mode="2026-07-28", elicitation_callback=Person("accept")) as client:
            arguments = {"connection_id": "default", "queries": [UPDATE]}
            first = await client.session.call_tool(
                "execute_transaction", arguments, allow_input_required=True
            )
            assert isinstance(first, InputRequiredResult)
            assert first.request_state and first.input_requests and "confirm" in first.input_requests
            assert await rows(db) == [(i, 100) for i in range(1, 11)]  # the preview was rolled back
            yes = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
            done = await client.session.call_tool(
                "execute_transaction", arguments, input_responses=yes, request_state=first.request_state
            )
            assert payload(done)["success"] is True
            # The same state again: refused, and nothing more is written.
            again = await client.session.call_tool(
                "execute_transaction", arguments, input_responses=yes, request_state=first.request_state
            )
            assert again.is_error and payload(again)["error_type"] == "invalid_input"
            # The state of one call does not confirm other statements: the SDK's seal refuses it.
            other = {"connection_id": "default", "queries": [{"query": "DELETE FROM accounts"}]}
            with pytest.raises(Exception, match="requestState"):
                await client.session.call_tool(
                    "execute_transaction", other, input_responses=yes, request_state=first.request_state
                )
    assert (await rows(db))[:4] == [(1, 90), (2, 90), (3, 90), (4, 100)]


PLUGIN = "pgmcp_confirm_sample_plugin"


def register_plugin(server: Any) -> None:
    @server.tool(read_only=False)
    async def wipe_accounts(connection_id: str) -> dict[str, Any]:
        """Delete every account."""
        result = await server.execute_transaction(connection_id, ["DELETE FROM accounts"])
        return {"deleted": result.results[0]["row_count"]}


@pytest.mark.parametrize("mode", MODES)
async def test_a_plugins_writes_are_confirmed_too(
    db: PgServer, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType(PLUGIN)
    module.register = register_plugin  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PLUGIN, module)
    before = await rows(db)
    person = Person("decline")
    async with serving(db, mode, person, mcp_plugins=PLUGIN) as client:
        await call_err(client, "wipe_accounts", "declined", connection_id="default")
    assert await rows(db) == before
    assert "DELETE FROM accounts" in person.messages[0] and "10 rows" in person.messages[0]
    async with serving(db, mode, Person("accept"), mcp_plugins=PLUGIN) as client:
        assert (await call_ok(client, "wipe_accounts", connection_id="default"))["deleted"] == 10
    assert await rows(db) == []


# --- over the real transports: the fast paths step aside for writes that may need the person ---------


def _transport_client(target: Any, mode: str, person: Person | None) -> Client:
    return Client(target, mode=mode, elicitation_callback=person)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("transport", "mode", "stateless"),
    [
        ("stdio", "legacy", False),
        ("http", "legacy", False),
        ("http", "2026-07-28", False),
        ("http", "2026-07-28", True),
    ],
)
async def test_confirmation_over_stdio_and_http(
    db: PgServer, tmp_path: Path, transport: str, mode: str, stateless: bool
) -> None:
    settings = {"CONFIRM_WRITES": "destructive", "DB_POOL_SIZE": "2"}
    if stateless:
        settings["MCP_STATELESS"] = "true"
    env = pgmcp_env(db, **settings)
    declined, accepted = Person("decline"), Person("accept")
    with contextlib.ExitStack() as stack:
        if transport == "stdio":
            target: Any = StdioServerParameters(
                command=PGMCP, args=["serve", "--transport", "stdio"], env=env
            )
        else:
            target = stack.enter_context(serve_http(env, tmp_path)).mcp_url
        async with _transport_client(target, mode, declined) as client:
            await call_err(
                client, "execute_transaction", "declined", connection_id="default", queries=[UPDATE]
            )
        assert await rows(db) == [(i, 100) for i in range(1, 11)]
        async with _transport_client(target, mode, accepted) as client:
            await call_ok(client, "execute_transaction", connection_id="default", queries=[UPDATE])
        async with _transport_client(target, mode, None) as client:
            await call_err(
                client,
                "execute_transaction",
                "confirmation_required",
                connection_id="default",
                queries=[UPDATE],
            )
    assert (await rows(db))[:4] == [(1, 90), (2, 90), (3, 90), (4, 100)]
    assert "3 rows" in declined.messages[0] and "3 rows" in accepted.messages[0]


@pytest.mark.slow
async def test_stateless_2025_http_cannot_ask_and_fails_closed(db: PgServer, tmp_path: Path) -> None:
    """Without a session the server cannot send elicitation/create: confirmation_required, nothing written."""
    env = pgmcp_env(db, CONFIRM_WRITES="destructive", MCP_STATELESS="true", DB_POOL_SIZE="2")
    with serve_http(env, tmp_path) as server:
        async with _transport_client(server.mcp_url, "legacy", Person("accept")) as client:
            data = await call_err(
                client,
                "execute_transaction",
                "confirmation_required",
                connection_id="default",
                queries=[UPDATE],
            )
    assert "CONFIRM_WRITES" in data["error"]
    assert await rows(db) == [(i, 100) for i in range(1, 11)]
