"""Voice calls: the IncomingCall Event Grid trigger, the Call Automation callback webhook, and call control.

IncomingCall is answered once (Event Grid redelivers) with media streaming to the media gateway. Callbacks are
authenticated by the signed token in the callback URL (plus ACS's JWT in Azure, see shared/calls/callback_auth.py).
The control routes let the media gateway end or transfer the call it carries, with the call's control token: a
transfer goes to the person the desk routed the caller's escalation to, or to the scenario's team line.
"""

from __future__ import annotations

import functools
import logging

import azure.functions as func

from functions.http import Forbidden, Handler, bearer_token, error, handles_errors, json_body, json_response
from shared import telemetry
from shared.bootstrap import get_services
from shared.calls.control import CallEnded, CallRejected
from shared.calls.events import INCOMING_CALL, parse_callbacks, parse_incoming_call
from shared.calls.service import CallService
from shared.calls.service import Forbidden as ForeignCall
from shared.calls.tokens import CONTROL_AUDIENCE
from shared.errors import InvalidInput

log = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.event_grid_trigger(arg_name="event")
async def incoming_call(event: func.EventGridEvent) -> None:
    # ACS subscriptions can use either schema: Event Grid (event_type) or CloudEvents (type). Reading only one made
    # the other raise, and Event Grid redelivered it until it gave up: the call was never answered.
    event_type = getattr(event, "event_type", None) or getattr(event, "type", "")
    if event_type != INCOMING_CALL:
        log.warning("incoming_call got a %s event (%s): filter the subscription on IncomingCall", event_type, event.id)
        return
    with telemetry.span("incoming_call", kind=telemetry.SpanKind.CONSUMER):
        try:
            call = parse_incoming_call(event.id, event.get_json())
        except (InvalidInput, ValueError) as exc:  # Event Grid would redeliver a failure forever: log it and drop it
            log.warning("dropped a malformed IncomingCall event %s: %s", event.id, exc)
            telemetry.error("malformed_event", "incoming_call")
            return
        await CallService(await get_services()).answer(call)


def _call_errors(handler: Handler) -> Handler:
    """Call-specific outcomes as HTTP answers; everything else is handled by `handles_errors`."""

    @functools.wraps(handler)
    async def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return await handler(req)
        except ForeignCall as exc:
            raise Forbidden(str(exc)) from None
        except (CallEnded, CallRejected) as exc:
            return error(409, str(exc))

    return wrapper


@bp.route(route="calls/callbacks", methods=["POST"])
@handles_errors
@_call_errors
async def call_callbacks(req: func.HttpRequest) -> func.HttpResponse:
    calls = CallService(await get_services())
    ref = await calls.authenticate_callback(req.params.get("token", ""), req.headers.get("Authorization", ""))
    events = parse_callbacks(req.get_body() or b"")
    await calls.on_callbacks(ref, events)
    return func.HttpResponse(status_code=204)


@bp.route(route="calls/{call_id}", methods=["GET"])
@handles_errors
@_call_errors
async def call_get(req: func.HttpRequest) -> func.HttpResponse:
    calls, call_id = await _authorize(req)
    return json_response(await calls.describe(call_id))


@bp.route(route="calls/{call_id}/hangup", methods=["POST"])
@handles_errors
@_call_errors
async def call_hang_up(req: func.HttpRequest) -> func.HttpResponse:
    calls, call_id = await _authorize(req)
    await calls.hang_up(call_id)
    return json_response({"call_id": call_id, "action": "hangup"}, status=202)


@bp.route(route="calls/{call_id}/transfer", methods=["POST"])
@handles_errors
@_call_errors
async def call_transfer(req: func.HttpRequest) -> func.HttpResponse:
    """Without a body: to the scenario's escalation number. With `{"escalation_id"}`: to the person the desk routed
    that escalation of this call's customer to, with the escalation id in the call's custom context."""
    calls, call_id = await _authorize(req)
    escalation_id = _escalation_id(json_body(req, allow_empty=True))
    target = await calls.transfer(call_id, escalation_id=escalation_id)
    body = {"call_id": call_id, "action": "transfer", "target": target}
    if escalation_id is not None:
        body["escalation_id"] = escalation_id
    return json_response(body, status=202)


def _escalation_id(body: dict) -> str | None:
    if unknown := set(body) - {"escalation_id"}:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}; the body takes only escalation_id")
    value = body.get("escalation_id")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise InvalidInput('"escalation_id" must be a non-empty string of at most 100 characters')
    return value


async def _authorize(req: func.HttpRequest) -> tuple[CallService, str]:
    """The call in the path, if the bearer token is that call's control token (what the gateway holds)."""
    services = await get_services()
    claims = services.tokens.verify(bearer_token(req), CONTROL_AUDIENCE)
    call_id = req.route_params.get("call_id", "")
    if claims.get("call") != call_id:
        raise Forbidden("this token belongs to another call")
    return CallService(services), call_id
