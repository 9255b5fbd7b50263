"""JSON lines on stderr, nothing on stdout, secrets never written."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pgmcp.errors import _registered_secrets, register_secret
from pgmcp.logs import configure_logging, get_logger, redact_text

# A module-level logger, made before any configure_logging() call of these tests,
# as the other pgmcp modules do.
module_log = get_logger("tests.module")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line must be one JSON object."""
    out = []
    for line in text.splitlines():
        if line.strip():
            obj = json.loads(line)
            assert isinstance(obj, dict), line
            out.append(obj)
    return out


@pytest.fixture(autouse=True)
def _info_level() -> Iterator[None]:
    """INFO logs, and a secret registry of this test's own.

    Secrets are process-wide; ones registered by earlier tests in the same
    session (a password like ``pass``) would mask words these tests expect.
    """
    configure_logging("INFO")
    saved = set(_registered_secrets)
    _registered_secrets.clear()
    try:
        yield
    finally:
        _registered_secrets.clear()
        _registered_secrets.update(saved)


def test_lines_are_json_on_stderr_with_timestamp_level_event(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger("pgmcp.test").info("something_happened", connection_id="main_db", row_count=3)
    out, err = capsys.readouterr()
    assert out == ""  # stdout belongs to the stdio transport
    [line] = json_lines(err)
    assert line["event"] == "something_happened"
    assert line["level"] == "INFO"
    assert line["connection_id"] == "main_db"
    assert line["row_count"] == 3
    assert line["logger"] == "pgmcp.test"
    assert list(line)[:3] == ["timestamp", "level", "event"]
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_levels_are_upper_case_so_jq_select_error_works(capsys: pytest.CaptureFixture[str]) -> None:
    log = get_logger()
    log.warning("w")
    log.error("e")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    lines = json_lines(capsys.readouterr().err)
    assert [(x["event"], x["level"]) for x in lines] == [
        ("w", "WARNING"),
        ("e", "ERROR"),
        ("failed", "ERROR"),
    ]
    assert "RuntimeError: boom" in lines[2]["exception"]


def test_debug_is_dropped_below_the_configured_level(capsys: pytest.CaptureFixture[str]) -> None:
    log = get_logger("x")
    log.debug("hidden")
    configure_logging("DEBUG")
    log.debug("shown")
    configure_logging("ERROR")
    log.warning("hidden_too")
    assert [x["event"] for x in json_lines(capsys.readouterr().err)] == ["shown"]


def test_module_level_logger_follows_a_later_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING")
    module_log.info("not_written")
    configure_logging("debug")
    module_log.debug("written")
    lines = json_lines(capsys.readouterr().err)
    assert [(x["event"], x["level"], x["logger"]) for x in lines] == [("written", "DEBUG", "tests.module")]


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown log level 'LOUD'"):
        configure_logging("LOUD")


def test_secret_named_fields_are_dropped_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger().info(
        "connect",
        password="pw-field-1",
        db_password="pw-field-2",
        Authorization="Bearer tok-field-3",
        auth_token="tok-field-4",
        spec={"host": "db", "password": "pw-field-5", "nested": [{"secret": "pw-field-6"}]},
        password_env="PROD_DB_PASSWORD",
    )
    err = capsys.readouterr().err
    for secret in ("pw-field-1", "pw-field-2", "tok-field-3", "tok-field-4", "pw-field-5", "pw-field-6"):
        assert secret not in err
    [line] = json_lines(err)
    assert line["spec"] == {"host": "db", "nested": [{}]}
    assert line["password_env"] == "PROD_DB_PASSWORD"  # the name of a variable, not a secret


def test_passwords_inside_strings_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    register_secret("registered-Secret-77")
    log = get_logger()
    log.warning(
        "connection_failed", dsn="postgresql://app:dsn-pw-1@db:5432/prod", detail="password=kv-pw-2 host=db"
    )
    log.error("could not connect with registered-Secret-77 as password")
    log.info("query", query="ALTER ROLE app PASSWORD 'sql-pw-3'")
    logging.getLogger("asyncpg.pool").error("lost postgresql://app:std-pw-4@db/prod")
    try:
        raise ConnectionError("auth failed for registered-Secret-77")
    except ConnectionError:
        log.exception("probe_failed")
    err = capsys.readouterr().err
    for secret in ("dsn-pw-1", "kv-pw-2", "registered-Secret-77", "sql-pw-3", "std-pw-4"):
        assert secret not in err
    lines = json_lines(err)
    assert lines[0]["dsn"] == "postgresql://app:***@db:5432/prod"
    assert "***" in lines[1]["event"]
    assert lines[2]["query"] == "ALTER ROLE app PASSWORD '***'"
    assert "ConnectionError: auth failed for ***" in lines[4]["exception"]


def test_stdlib_logging_goes_through_the_same_renderer(capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("uvicorn.error").warning("Started server process [%d]", 42)
    logging.getLogger("mcp.server").debug("below the level")
    out, err = capsys.readouterr()
    assert out == ""
    [line] = json_lines(err)
    assert line["event"] == "Started server process [42]"
    assert line["level"] == "WARNING"
    assert line["logger"] == "uvicorn.error"
    assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None


def test_values_json_cannot_encode_become_strings(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger().info("odd_values", amount=Decimal("299.99"), path=Path("/tmp/x"), ids={3, 4})
    [line] = json_lines(capsys.readouterr().err)
    assert line["amount"] == "299.99"
    assert line["path"] == "/tmp/x"
    assert sorted(line["ids"]) == [3, 4]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT 1", "SELECT 1"),
        ("SELECT 'password' AS word", "SELECT 'password' AS word"),
        ("CREATE ROLE a LOGIN PASSWORD 'x''y'", "CREATE ROLE a LOGIN PASSWORD '***'"),
        (
            "alter user a with encrypted password $q$x$q$ valid until 'y'",
            "alter user a with encrypted password '***' valid until 'y'",
        ),
        ("dblink('host=db password=pw1')", "dblink('host=db password=***')"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
