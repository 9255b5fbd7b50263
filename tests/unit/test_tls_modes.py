"""What each ssl_mode asks of asyncpg: the libpq table of ``pgmcp.db.tls``, pinned.

The integration tests (``test_tls.py``) show the behaviour against a real server; this
pins the contexts themselves, so a change of meaning is seen here first.
"""

from __future__ import annotations

import ssl

import pytest

from pgmcp.db.tls import ssl_arg
from pgmcp.errors import InvalidInput
from tests.integration.tls_cluster import _ca, _leaf, _pem, _write_key


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("tls")
    ca, ca_key = _ca("unit CA")
    client, client_key = _leaf("someone", ca, ca_key, client=True)
    (base / "ca.crt").write_bytes(_pem(ca))
    (base / "client.crt").write_bytes(_pem(client))
    _write_key(base / "client.key", client_key)
    (base / "not-a-cert").write_text("hello\n")
    return {name: str(base / name) for name in ("ca.crt", "client.crt", "client.key", "not-a-cert")}


def context(value: object) -> ssl.SSLContext:
    assert isinstance(value, ssl.SSLContext), value
    return value


def test_no_tls_for_disable_and_unix_sockets() -> None:
    assert ssl_arg(host="db", mode="disable") is False
    assert ssl_arg(host="/var/run/postgresql", mode="verify-full") is False


@pytest.mark.parametrize("mode", ["allow", "prefer"])
def test_the_negotiating_modes_are_left_to_asyncpg(mode: str, files: dict[str, str]) -> None:
    assert ssl_arg(host="db", mode=mode) == mode
    assert ssl_arg(host="db", mode=mode, root_cert=files["ca.crt"]) == mode  # nothing verified anyway


def test_a_client_certificate_makes_prefer_a_context_that_verifies_nothing(files: dict[str, str]) -> None:
    ctx = context(ssl_arg(host="db", mode="prefer", cert=files["client.crt"], key=files["client.key"]))
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_require_verifies_nothing_without_a_root_certificate_and_the_chain_with_one(
    files: dict[str, str],
) -> None:
    plain = context(ssl_arg(host="db", mode="require"))
    assert plain.verify_mode == ssl.CERT_NONE and not plain.check_hostname
    with_ca = context(ssl_arg(host="db", mode="require", root_cert=files["ca.crt"]))
    assert with_ca.verify_mode == ssl.CERT_REQUIRED and not with_ca.check_hostname


def test_verify_ca_checks_the_chain_and_verify_full_the_name_too(files: dict[str, str]) -> None:
    ca = context(ssl_arg(host="db", mode="verify-ca", root_cert=files["ca.crt"]))
    assert ca.verify_mode == ssl.CERT_REQUIRED and not ca.check_hostname
    full = context(ssl_arg(host="db", mode="verify-full", root_cert=files["ca.crt"]))
    assert full.verify_mode == ssl.CERT_REQUIRED and full.check_hostname
    assert full.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_verify_full_without_a_root_certificate_trusts_the_system_store() -> None:
    full = context(ssl_arg(host="db", mode="verify-full"))
    assert full.verify_mode == ssl.CERT_REQUIRED and full.check_hostname


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (
            {"root_cert": "/nonexistent/ca.crt"},
            "ssl_root_cert file not found on the server: /nonexistent/ca.crt",
        ),
        ({"root_cert": "NOT_A_CERT"}, "holds no usable CA certificate"),
        ({"cert": "/nonexistent/c.crt"}, "ssl_cert file not found"),
        ({"cert": "CLIENT", "key": "/nonexistent/c.key"}, "ssl_key file not found"),
        ({"key": "KEY"}, "ssl_key is given without ssl_cert"),
        ({"cert": "NOT_A_CERT"}, "could not be loaded as a client certificate"),
    ],
)
def test_unusable_files_are_named_never_quoted(
    kwargs: dict[str, str], needle: str, files: dict[str, str]
) -> None:
    names = {"NOT_A_CERT": files["not-a-cert"], "CLIENT": files["client.crt"], "KEY": files["client.key"]}
    resolved = {k: names.get(v, v) for k, v in kwargs.items()}
    with pytest.raises(InvalidInput) as err:
        ssl_arg(host="db", mode="verify-full", **resolved)
    assert needle in str(err.value)
    assert "hello" not in str(err.value)
