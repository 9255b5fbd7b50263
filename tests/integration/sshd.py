"""A real OpenSSH server for the tunnel tests, started on a free loopback port.

Everything it needs lives in a temporary directory: its own ``sshd_config``, host
key and ``authorized_keys`` (the keys are made with asyncssh, so no ``ssh-keygen``
is needed). It lets in the user running the tests, by key only: OpenSSH checks
passwords against the system's accounts, and the tests do not change those (the
password path is tested against asyncssh's server instead, see
``test_ssh_tunnel.py``). TCP forwarding is allowed, so through it a test reaches
the machine's PostgreSQL as a bastion host's users reach theirs.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import asyncssh
import psutil
import pytest

from tests.integration.proc import free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def write_key(path: Path, key: asyncssh.SSHKey) -> None:
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)


class OpenSshServer:
    """``sshd -D`` on 127.0.0.1:``port``; :meth:`stop` and :meth:`start` keep the port and keys."""

    def __init__(self) -> None:
        if not os.path.exists(SSHD):
            pytest.skip(
                "OpenSSH's sshd is not installed (Debian package openssh-server; .ci/run installs it)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="pgmcp-sshd-"))
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        write_key(self.dir / "host_key", self.host_key)
        write_key(self.dir / "client_key", self.client_key)
        (self.dir / "authorized_keys").write_bytes(self.client_key.export_public_key())
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(self.known_hosts_line(self.host_key))
        self.log = self.dir / "sshd.log"
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.dir / 'host_key'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    "StrictModes no",  # the temporary directory is not root's alone
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "AllowTcpForwarding yes",
                    "PermitOpen any",
                    "X11Forwarding no",
                    "PrintMotd no",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def known_hosts_line(self, key: asyncssh.SSHKey) -> str:
        """A known_hosts entry for this server (a non-22 port is written [host]:port)."""
        return f"[127.0.0.1]:{self.port} {key.export_public_key().decode().strip()}\n"

    def start(self) -> None:
        if os.geteuid() == 0:
            # sshd's privilege separation needs this directory; Debian's service creates it.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        with self.log.open("ab") as log:
            # An absolute path: sshd re-executes itself for each connection.
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log.read_text(errors="replace")
                self.cleanup()
                pytest.skip(f"sshd did not start here: {text.strip().splitlines()[-1:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not answer on port {self.port}")

    def session_processes(self) -> list[psutil.Process]:
        """The sshd processes serving connections (the listener's children)."""
        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def drop_sessions(self) -> int:
        """Kill every connection's sshd process, as a bastion's restart or a network cut does."""
        procs = self.session_processes()
        for p in procs:
            p.kill()
        psutil.wait_procs(procs, timeout=5)
        return len(procs)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.drop_sessions()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
