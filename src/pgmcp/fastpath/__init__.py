"""``tools/call`` answered without the SDK's dispatcher, on stdio and on the 2026-07-28 HTTP entry.

The SDK takes a ``tools/call`` through pydantic parsing of the JSON-RPC message,
memory streams, a dispatcher task, a per-request session and context, an
OpenTelemetry middleware, two validations of the request's params, and a
re-validation and re-dump of the result: ~0.65 ms of CPU a call over stdio and
more over HTTP on this machine, more than the whole ``execute_query("SELECT 1")``
below it (benchmarks/README.md). The fast paths answer the calls they can vouch
for themselves, through the same ``PgMcpServer.call_tool`` (argument validation,
``invalid_input``, draining, in-flight count, metrics, audit) and with the same
result on the wire; every other message goes to the SDK unchanged.

A call takes a fast path only when all of these hold, otherwise the SDK serves it:

* the protocol era is known and live: a stdio client completed the handshake
  (``initialize``, then ``notifications/initialized``), or the request carries the
  2026-07-28 per-request envelope, which the SDK's own classifier accepts for it;
* the message is a JSON-RPC 2.0 request (int or string id) for ``tools/call`` whose
  params hold only ``name``, ``arguments`` (an object) and a ``_meta`` with at most
  the envelope keys — no ``progressToken``: progress notifications go out through the
  SDK's session;
* the tool was registered through ``pgmcp.registration.register_tool``, and no SDK
  extension, cache hint or extra middleware wants to see tool calls; with
  CONFIRM_WRITES on, only read-only tools (a write may have to ask the person
  through the session: elicitation, or the 2026-07-28 ``input_required`` result);
* the SDK's result sieve for the protocol version leaves our results unchanged.

Modules: :mod:`.calls` (what is eligible and the answer), :mod:`.stdio` (a stdio
session's lines), :mod:`.http` (an ASGI layer in front of ``/mcp``).
"""

from pgmcp.fastpath.http import HttpFastPath
from pgmcp.fastpath.stdio import ToolCallFastPath

__all__ = ["HttpFastPath", "ToolCallFastPath"]
