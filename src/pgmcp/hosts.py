"""Host names: which bind addresses are loopback (the HTTP edge, the console and the CLI ask)."""

__all__ = ["is_loopback"]


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
