"""The MCP edge of CONFIRM_WRITES and progress: asking the person, and reporting to the client.

:class:`ClientAsker` is the :class:`pgmcp.confirm.Asker` of one tool call:

* a 2025-era session (handshake) gets an ``elicitation/create`` request in form mode,
  sent mid-call over the session, and the call waits for the answer;
* a 2026-07-28 request gets an ``input_required`` result instead (:class:`InputNeeded`
  carries it out of the tool): the question, and the plan's sealed state. The client asks
  the person and calls the tool again with the answer and the state, which is checked
  (HMAC, expiry, the very same statements) and accepted once;
* a client that declared no (form) elicitation, or a channel that cannot carry a
  server request (stateless 2025-era HTTP), raises ``ConfirmationRequired``: nothing runs.

:class:`ClientProgress` turns ``progress(done, total)`` into ``notifications/progress``
when (and only when) the call carried a ``progressToken``.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp_types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from mcp_types.version import is_version_at_least

from pgmcp.confirm import Answer, Plan, Sealer, cannot_ask
from pgmcp.errors import ConfirmationRequired

__all__ = ["ClientAsker", "ClientProgress", "InputNeeded", "wants_progress"]

_INPUT_REQUIRED_VERSION = "2026-07-28"
_KEY = "confirm"
# One optional boolean: accepting the form is the confirmation; an explicit false declines.
_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "confirm": {
            "type": "boolean",
            "title": "Run these statements",
            "description": "Uncheck (or decline) to run nothing.",
            "default": True,
        }
    },
}


class InputNeeded(Exception):  # noqa: N818 - a signal, not an error
    """The tool call ends with this ``input_required`` result (2026-07-28); the client resumes it."""

    def __init__(self, result: InputRequiredResult) -> None:
        super().__init__("input required")
        self.result = result


def _answer(result: ElicitResult) -> Answer:
    if result.action == "accept" and (result.content or {}).get("confirm") is False:
        return "decline"
    return result.action


def _can_elicit(ctx: Context[Any, Any]) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` (before modes existed) means form; url-only does not.
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


class ClientAsker:
    """Asks the person behind one tool call's client (see the module docstring)."""

    def __init__(self, ctx: Context[Any, Any] | None, sealer: Sealer) -> None:
        self._ctx = ctx
        self._sealer = sealer

    async def confirm(self, plan: Plan) -> Answer:
        ctx = self._ctx
        if ctx is None or ctx._request_context is None:
            raise ConfirmationRequired(cannot_ask(plan))
        version = ctx.protocol_version
        if version is not None and is_version_at_least(version, _INPUT_REQUIRED_VERSION):
            return self._resumed(ctx, plan)
        if not _can_elicit(ctx) or not ctx.session.can_send_request:
            raise ConfirmationRequired(cannot_ask(plan))
        result = await ctx.session.elicit_form(
            message=plan.message(),
            requested_schema=_SCHEMA,
            related_request_id=ctx.request_context.request_id,
        )
        return _answer(result)

    def _resumed(self, ctx: Context[Any, Any], plan: Plan) -> Answer:
        """The answer a resumed 2026-07-28 call carries, or :class:`InputNeeded` to ask for it."""
        state = ctx.request_state
        response = (ctx.input_responses or {}).get(_KEY)
        if state is not None and isinstance(response, ElicitResult):
            self._sealer.open(state, plan)  # raises InvalidInput: forged, replayed, expired, other SQL
            return _answer(response)
        if not _can_elicit(ctx):
            raise ConfirmationRequired(cannot_ask(plan))
        question = ElicitRequest(
            params=ElicitRequestFormParams(message=plan.message(), requested_schema=_SCHEMA)
        )
        raise InputNeeded(
            InputRequiredResult(input_requests={_KEY: question}, request_state=self._sealer.seal(plan))
        )


class ClientProgress:
    """``notifications/progress`` for one call; a no-op when the call carried no progressToken."""

    def __init__(self, ctx: Context[Any, Any]) -> None:
        self._ctx = ctx

    async def __call__(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        await self._ctx.report_progress(progress, total, message)


def wants_progress(ctx: Context[Any, Any] | None) -> bool:
    """Whether the call asked for progress (a progressToken; in-process, a progress callback).

    Asked before any work, so that a call without one pays nothing (no chunking, no timer).
    """
    request_context = getattr(ctx, "_request_context", None) if ctx is not None else None
    if request_context is None:
        return False
    meta = getattr(request_context, "meta", None)
    if isinstance(meta, dict) and _token(meta.get("progress_token", meta.get("progressToken"))):
        return True
    # The dispatch context holds what the transport parsed: the wire token, or the in-process callback.
    outbound = getattr(request_context.session, "_request_outbound", None)
    outbound = getattr(outbound, "_inner", outbound)  # the SDK's wrapper for requests that cannot call back
    return any(
        getattr(outbound, name, None) is not None and _token(getattr(outbound, name))
        for name in ("_progress_token", "progress_token", "_on_progress")
    )


def _token(value: Any) -> bool:
    return value is not None and not isinstance(value, bool)
