"""The fast paths' view of the SDK: its result sieve, its initialize negotiation, the answer's encoding."""

from __future__ import annotations

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from pgmcp.fastpath import calls


def test_every_version_the_sdk_serves_passes_our_results_unchanged() -> None:
    """If an SDK upgrade starts reshaping tool results for a version, the fast paths stop taking it."""
    for version in (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS):
        assert calls.plain(version), version
    assert not calls.plain("1999-01-01")


def test_initialize_negotiates_as_the_sdk_does() -> None:
    hello = {"capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    assert calls.negotiated({**hello, "protocolVersion": "2025-03-26"}) == "2025-03-26"
    assert calls.negotiated({**hello, "protocolVersion": "1999-01-01"}) == LATEST_HANDSHAKE_VERSION
    assert calls.negotiated({"protocolVersion": "2025-06-18"}) is None, "the SDK refuses it: no capabilities"


def test_an_answer_with_an_integer_past_64_bits_is_still_written() -> None:
    """orjson refuses such integers; the answer must still go out (as the SDK's JSON would carry it)."""
    assert (
        calls.encode({"id": 1, "result": {"n": 2**70}}) == b'{"id":1,"result":{"n":1180591620717411303424}}'
    )
    assert calls.encode({"id": 1, "result": {"n": 5}}) == b'{"id":1,"result":{"n":5}}'
