"""SSH tunnels: a database behind a bastion host, reached through a local port forward.

A connection with ``ssh_host`` gets one :class:`SshTunnel`, owned by the registry's
``Connection`` and closed with it. The tunnel is one SSH connection to
``ssh_user@ssh_host:ssh_port`` and a port forward that listens on ``127.0.0.1`` (a
port the OS picks) and leads to ``host:port`` as the SSH server sees them.

- **Opened and reopened on demand.** The pool makes each new database connection
  through :meth:`SshTunnel.connect` (asyncpg's ``connect=`` hook), which first asks
  :meth:`SshTunnel.ensure` for the forward's current port. When the SSH connection
  has dropped (bastion restarted, network cut: keepalives notice a silent peer), the
  connections through it are lost, asyncpg discards them, and the next call's new
  connection reopens the tunnel, on whatever local port the OS gives this time. No
  background task, no fixed port to collide on.
- **Host keys are verified**, always: against ``ssh_known_hosts``, or else the server
  user's ``~/.ssh/known_hosts``. An unknown or changed key refuses the connection
  (``connection_failed``); nothing is connected.
- **Secrets only by name.** ``ssh_key_env`` names a server-side variable holding a
  private key (its text, or the path of a key file on the server); ``ssh_password_env``
  one holding the password. The values are registered with ``mask_secrets``; neither
  the SSH agent nor ``~/.ssh`` keys nor ``~/.ssh/config`` are used, so what a
  connection may do is exactly what its spec says.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import asyncpg
import asyncssh

from pgmcp.config import ConnectionSpec, resolve_secret_env
from pgmcp.errors import ConnectionFailed, InvalidInput, PgMcpError, mask_secrets
from pgmcp.logs import get_logger

__all__ = ["SshTunnel"]

log = get_logger("pgmcp.db")

LOCAL_HOST = "127.0.0.1"
# A silent peer (cable cut, bastion frozen) is noticed within interval * count seconds.
KEEPALIVE_INTERVAL = 15.0
KEEPALIVE_COUNT_MAX = 3


class SshTunnel:
    """One SSH connection to a bastion and a local port forward to the database behind it."""

    def __init__(self, spec: ConnectionSpec, *, timeout: float) -> None:
        if not spec.ssh_host:
            raise ValueError("SshTunnel needs a spec with ssh_host")
        self._spec = spec
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._ssh: asyncssh.SSHClientConnection | None = None
        self._listener: asyncssh.SSHListener | None = None
        self._closed = False
        #: How many times the SSH connection was opened (1 + reopenings).
        self.opened = 0

    @property
    def bastion(self) -> str:
        return f"{self._spec.ssh_user}@{self._spec.ssh_host}:{self._spec.ssh_port}"

    @property
    def is_open(self) -> bool:
        return self._ssh is not None and not self._ssh.is_closed() and self._listener is not None

    @property
    def local_port(self) -> int | None:
        """The forward's port on 127.0.0.1 while the tunnel is open."""
        return self._listener.get_port() if self.is_open and self._listener is not None else None

    async def ensure(self) -> int:
        """The local port of an open tunnel, opening (or reopening) it first if needed.

        Raises:
            ConnectionFailed: the SSH server cannot be reached, its host key is refused,
                the login fails, or it refuses to forward.
            InvalidInput: a variable the spec names is unset, or a key/known_hosts file unusable.
        """
        port = self.local_port
        if port is not None:
            return port
        async with self._lock:
            if self._closed:
                raise ConnectionFailed(f"The SSH tunnel through {self.bastion} is closed")
            port = self.local_port
            if port is None:
                port = await self._open()
            return port

    async def connect(self, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        """asyncpg's ``connect``, through the tunnel: the pool's ``connect=`` hook."""
        kwargs.update(host=LOCAL_HOST, port=await self.ensure())
        try:
            return await asyncpg.connect(*args, **kwargs)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
            # The forward accepts locally and only then asks the SSH server for the channel;
            # a refusal there reaches asyncpg as a bare "connection closed". Ask again to say why.
            reason = await self._why_no_channel()
            if reason is None:
                raise
            raise ConnectionFailed(reason) from exc

    async def close(self) -> None:
        """Close the forward and the SSH connection; the tunnel is not reopened afterwards."""
        self._closed = True
        ssh, self._ssh, self._listener = self._ssh, None, None
        if ssh is not None:
            ssh.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ssh.wait_closed(), timeout=5)

    # --- opening ---------------------------------------------------------------------

    async def _open(self) -> int:
        spec = self._spec
        if self._ssh is not None:
            log.warning("ssh_tunnel_lost", bastion=self.bastion, connection_id=spec.connection_id)
            self._ssh.close()
            self._ssh = self._listener = None
        options = self._options()
        where = f"{spec.ssh_host}:{spec.ssh_port}"
        try:
            async with asyncio.timeout(self._timeout):
                ssh = await asyncssh.connect(spec.ssh_host, spec.ssh_port, **options)
        except TimeoutError:
            raise self._failed(
                f"the SSH server {where} did not complete the login within "
                f"CONNECTION_TIMEOUT={self._timeout:g} seconds"
            ) from None
        except asyncssh.HostKeyNotVerifiable:
            raise self._failed(
                f"the host key of the SSH server {where} was refused: it is not the key "
                f"{self._known_hosts_path()} lists for that host (unknown or changed), so nothing was "
                f"connected. If the key is right, add it there (ssh-keyscan -p {spec.ssh_port} "
                f"{spec.ssh_host}); known_hosts names a non-22 port as [host]:port"
            ) from None
        except asyncssh.PermissionDenied:
            how = " and ".join(
                f"{name}={value}"
                for name, value in (
                    ("ssh_key_env", spec.ssh_key_env),
                    ("ssh_password_env", spec.ssh_password_env),
                )
                if value
            )
            raise self._failed(
                f"the SSH server {where} refused the login of {spec.ssh_user!r} with {how}"
            ) from None
        except (OSError, asyncssh.Error) as exc:
            raise self._failed(f"the SSH server {where} could not be reached: {_plain(exc)}") from None
        try:
            listener = await ssh.forward_local_port(LOCAL_HOST, 0, spec.host, spec.port)
        except (OSError, asyncssh.Error) as exc:
            ssh.close()
            raise self._failed(f"no local port could be opened for the forward: {_plain(exc)}") from None
        if self._closed:  # closed by remove_connection / shutdown while this was opening
            ssh.close()
            raise ConnectionFailed(f"The SSH tunnel through {self.bastion} is closed")
        self._ssh, self._listener = ssh, listener
        self.opened += 1
        log.info(
            "ssh_tunnel_opened",
            connection_id=spec.connection_id,
            bastion=self.bastion,
            target=f"{spec.host}:{spec.port}",
            local_port=listener.get_port(),
            reopened=self.opened > 1,
        )
        return listener.get_port()

    def _failed(self, why: str) -> ConnectionFailed:
        spec = self._spec
        message = f"Could not open the SSH tunnel to {spec.host}:{spec.port} through {self.bastion}: {why}"
        log.warning("connection_failed", connection_id=spec.connection_id, error=mask_secrets(message))
        return ConnectionFailed(message)

    def _known_hosts_path(self) -> Path:
        return Path(self._spec.ssh_known_hosts or "~/.ssh/known_hosts").expanduser()

    def _options(self) -> dict[str, Any]:
        spec = self._spec
        path = self._known_hosts_path()
        if not path.is_file():
            if spec.ssh_known_hosts:
                raise InvalidInput(f"ssh_known_hosts file not found on the server: {spec.ssh_known_hosts}")
            raise InvalidInput(
                f"No ssh_known_hosts was given and {path} does not exist: give ssh_known_hosts, the path "
                "of a known_hosts file on the server that holds the SSH server's host key"
            )
        try:
            known_hosts = asyncssh.read_known_hosts(str(path))
        except (OSError, ValueError):
            # Never the parser's message: it quotes the offending line of whatever file was named.
            raise InvalidInput(f"ssh_known_hosts {path} could not be read as a known_hosts file") from None
        options: dict[str, Any] = {
            "username": spec.ssh_user,
            "known_hosts": known_hosts,
            "client_keys": None,
            "password": None,
            "agent_path": None,
            "config": None,
            "keepalive_interval": KEEPALIVE_INTERVAL,
            "keepalive_count_max": KEEPALIVE_COUNT_MAX,
            "connect_timeout": self._timeout,
            "login_timeout": self._timeout,
        }
        if spec.ssh_key_env:
            options["client_keys"] = [_private_key(spec.ssh_key_env)]
        if spec.ssh_password_env:
            options["password"] = resolve_secret_env(spec.ssh_password_env, "ssh_password_env")
        return options

    async def _why_no_channel(self) -> str | None:
        """Why the SSH server will not open a channel to the database, or None if it will."""
        spec = self._spec
        ssh = self._ssh
        if ssh is None or ssh.is_closed():
            return None  # the next connection reopens the tunnel; asyncpg's own error stands
        try:
            async with asyncio.timeout(self._timeout):
                _, writer = await ssh.open_connection(spec.host, spec.port)
        except asyncssh.ChannelOpenError as exc:
            return (
                f"Could not connect to {spec.host}:{spec.port}/{spec.database} through the SSH tunnel: "
                f"the SSH server {spec.ssh_host}:{spec.ssh_port} could not open a connection to "
                f"{spec.host}:{spec.port} ({exc.reason}). host and port are as the SSH server sees them"
            )
        except (OSError, asyncssh.Error, TimeoutError):
            return None
        writer.close()
        return None


def _private_key(env_name: str) -> asyncssh.SSHKey:
    """The private key the variable ``env_name`` holds: key text, or the path of a key file."""
    value = resolve_secret_env(env_name, "ssh_key_env")
    text = value.strip()
    try:
        if text.startswith(("-----BEGIN", "PuTTY-User-Key-File")):
            return asyncssh.import_private_key(text)
        path = Path(text).expanduser()
        if len(text) < 4096 and "\n" not in text and path.is_file():
            return asyncssh.read_private_key(str(path))
    except (OSError, asyncssh.KeyImportError) as exc:
        # asyncssh's messages are fixed sentences ("Passphrase must be specified ..."), never the key.
        raise InvalidInput(
            f"The private key that ssh_key_env={env_name} gives could not be loaded: {_plain(exc)} "
            "(pgmcp needs an unencrypted OpenSSH or PEM private key)"
        ) from None
    raise InvalidInput(
        f"ssh_key_env names {env_name!r}, whose value is neither a private key (-----BEGIN ...) "
        "nor the path of a key file on the server"
    )


def _plain(exc: BaseException) -> str:
    if isinstance(exc, PgMcpError):
        return str(exc)
    text = getattr(exc, "reason", None) or str(exc).strip()
    return mask_secrets(str(text) or type(exc).__name__)
