"""postgresql:// URIs: DATABASE_URL, add_connection(dsn=...) and ``dsn`` in MCP_CONFIG_FILE."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgmcp.config import SettingsError, load_settings
from pgmcp.dsn import DsnError, parse_dsn
from pgmcp.errors import mask_secrets

SECRET = "p@ss:w/rd-Unit-4417"
QUOTED = "p%40ss%3Aw%2Frd-Unit-4417"


def test_a_full_uri_gives_every_part_percent_decoded() -> None:
    parts = parse_dsn(f"postgresql://app%20user:{QUOTED}@db.example.com:6543/sales%20db?sslmode=verify-full")
    assert parts == {
        "user": "app user",
        "password": SECRET,
        "host": "db.example.com",
        "port": 6543,
        "database": "sales db",
        "ssl_mode": "verify-full",
    }


def test_socket_directory_ipv6_and_tls_files_as_query_parameters() -> None:
    assert parse_dsn("postgres://me@/app?host=/var/run/postgresql&port=5433") == {
        "user": "me",
        "database": "app",
        "host": "/var/run/postgresql",
        "port": 5433,
    }
    assert parse_dsn("postgresql://[::1]:5432/x")["host"] == "::1"
    parts = parse_dsn("postgresql://h/x?sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k.pem&application_name=a")
    assert (parts["ssl_root_cert"], parts["ssl_cert"], parts["ssl_key"]) == ("/ca.pem", "/c.pem", "/k.pem")


@pytest.mark.parametrize(
    ("dsn", "words"),
    [
        ("mysql://u:{s}@h/db", "postgresql://"),
        ("host=h user=u password={s}", "postgresql://"),
        ("postgresql://u:{s}@h1,h2/db", "several hosts"),
        ("postgresql://u:{s}@h:99999/db", "port"),
        ("postgresql://u:{s}@h/db?sslmode=sometimes", "sslmode"),
        ("postgresql://u:{s}@h/db?options=-c%20x%3D1", "unsupported DSN parameter 'options'"),
    ],
)
def test_an_unusable_uri_is_refused_with_a_sentence_that_never_shows_its_password(
    dsn: str, words: str
) -> None:
    with pytest.raises(DsnError) as info:
        parse_dsn(dsn.format(s=SECRET))
    assert words in str(info.value)
    assert SECRET not in str(info.value)


def test_database_url_becomes_the_required_default_connection_and_its_password_is_masked() -> None:
    settings = load_settings(
        database_url=f"postgresql://mcp:{QUOTED}@db.internal/app?sslmode=require", db_pool_size=4
    )
    assert not settings.embedded
    spec = settings.default_connection()
    assert spec is not None
    assert (spec.host, spec.port, spec.database, spec.user, spec.ssl_mode) == (
        "db.internal",
        5432,
        "app",
        "mcp",
        "require",
    )
    assert spec.required and spec.pool_size == 4
    assert spec.password is not None and spec.password.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in repr(spec)
    assert SECRET not in mask_secrets(f"could not connect with {SECRET}")


def test_database_url_and_db_host_together_stop_start_up_naming_database_url() -> None:
    with pytest.raises(
        SettingsError, match=r"^Invalid setting DATABASE_URL: give either DATABASE_URL or DB_HOST"
    ):
        load_settings(database_url="postgresql://u@h/db", db_host="other")
    with pytest.raises(SettingsError) as info:
        load_settings(database_url=f"postgresql://u:{SECRET}@h1,h2/db")
    assert str(info.value).startswith("Invalid setting DATABASE_URL:")
    assert SECRET not in str(info.value)


def test_a_config_file_connection_may_be_a_dsn_without_a_password(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[connections.reports]\ndsn = "postgresql://rep@reports.internal:6000/r?sslmode=require"\n'
        'password_env = "REPORTS_PW"\nrequired = true\n',
        encoding="utf-8",
    )
    (spec,) = load_settings(mcp_config_file=config).connections
    assert (spec.host, spec.port, spec.database, spec.user, spec.ssl_mode) == (
        "reports.internal",
        6000,
        "r",
        "rep",
        "require",
    )
    assert spec.required and spec.password_env == "REPORTS_PW"

    config.write_text(f'[connections.reports]\ndsn = "postgresql://rep:{QUOTED}@h/r"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="dsn has a password; use password_env") as info:
        load_settings(mcp_config_file=config)
    assert SECRET not in str(info.value) and QUOTED not in str(info.value)

    config.write_text('[connections.reports]\ndsn = "postgresql://rep@h/r"\nhost = "x"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="gives host both in dsn and as keys"):
        load_settings(mcp_config_file=config)
