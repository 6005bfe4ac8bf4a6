"""Voice calls: the IncomingCall Event Grid trigger, the Call Automation callback webhook, and call control.

IncomingCall is answered once (Event Grid redelivers) with media streaming to the media gateway. Callbacks are
authenticated by the signed token in the callback URL (plus ACS's JWT in Azure, see shared/calls/callback_auth.py).
The control routes let the media gateway end or transfer the call it carries, with the call's control token: a
transfer goes to the person the desk routed the caller's escalation to, or to the scenario's team line.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.callbacks import sync_callbacks
from functions.http import Forbidden, Handler, bearer_token, error, handles_errors, json_response
from functions.synthesis import start_synthesis
from shared import telemetry
from shared.bootstrap import get_services
from shared.calls.control import CallEnded, CallRejected
from shared.calls.events import INCOMING_CALL, parse_incoming_call
from shared.calls.service import CallService
from shared.calls.service import Forbidden as ForeignCall
from shared.calls.tokens import CONTROL_AUDIENCE
from shared.errors import InvalidInput

log = logging.getLogger(__name__)

bp = df.Blueprint()


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
    async def wrapper(req: func.HttpRequest, **bindings: Any) -> func.HttpResponse:
        try:
            return await handler(req, **bindings)
        except ForeignCall as exc:
            raise Forbidden(str(exc)) from None
        except (CallEnded, CallRejected) as exc:
            return error(409, str(exc))

    return wrapper


@bp.route(route="calls/callbacks", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handles_errors
@_call_errors
async def call_callbacks(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from functions.api.calls import parse_callbacks  # pydantic, loaded on the first callback (functions/api/)

    calls = CallService(await get_services())
    ref = await calls.authenticate_callback(req.params.get("token", ""), req.headers.get("Authorization", ""))
    events = parse_callbacks(req.get_body() or b"")
    await calls.on_callbacks(ref, events)
    if any(e.type == "CallDisconnected" for e in events):  # the caller hung up: the synthesis, unless it goes on
        await start_synthesis(client, ref.customer_id, ref.session_id, "hung_up")
        await sync_callbacks(client, ref.customer_id)  # a callback asked for on the call starts once they hang up
    return func.HttpResponse(status_code=204)


@bp.route(route="calls/{call_id}", methods=["GET"])
@handles_errors
@_call_errors
async def call_get(req: func.HttpRequest) -> func.HttpResponse:
    from functions.api.call_control import call_status  # pydantic, loaded on the first use (functions/api/)

    calls, call_id = await _authorize(req)
    return json_response(call_status(await calls.describe(call_id)))


@bp.route(route="calls/{call_id}/hangup", methods=["POST"])
@handles_errors
@_call_errors
async def call_hang_up(req: func.HttpRequest) -> func.HttpResponse:
    """Without a body: the conversation is over. With `{"outcome": "abandoned" | "voicemail"}`: the caller said
    nothing through the gateway's reprompt and goodbye, or an answering machine took the call, and the call's record
    says so (functions/api/call_control.py)."""
    from functions.api.call_control import CallAction, HangUpRequest
    from functions.api.parsing import parse_body

    calls, call_id = await _authorize(req)
    body = parse_body(req, HangUpRequest, allow_empty=True)
    await calls.hang_up(call_id, outcome=body.outcome)
    return json_response(CallAction(call_id=call_id, action="hangup", **_given(body)), status=202)


@bp.route(route="calls/{call_id}/transfer", methods=["POST"])
@handles_errors
@_call_errors
async def call_transfer(req: func.HttpRequest) -> func.HttpResponse:
    """Without a body: to the scenario's escalation number. With `{"escalation_id"}`: to the person the desk routed
    that escalation of this call's customer to, with the escalation id in the call's custom context."""
    from functions.api.call_control import CallAction, TransferRequest
    from functions.api.parsing import parse_body

    calls, call_id = await _authorize(req)
    body = parse_body(req, TransferRequest, allow_empty=True)
    target = await calls.transfer(call_id, escalation_id=body.escalation_id)
    return json_response(CallAction(call_id=call_id, action="transfer", target=target, **_given(body)), status=202)


def _given(body: Any) -> dict[str, Any]:
    """The fields the request set, echoed in the answer (one it left out stays out of the answer too)."""
    return body.model_dump(exclude_unset=True)


async def _authorize(req: func.HttpRequest) -> tuple[CallService, str]:
    """The call in the path, if the bearer token is that call's control token (what the gateway holds)."""
    services = await get_services()
    claims = services.tokens.verify(bearer_token(req), CONTROL_AUDIENCE)
    call_id = req.route_params.get("call_id", "")
    if claims.get("call") != call_id:
        raise Forbidden("this token belongs to another call")
    return CallService(services), call_id


# Calls we place (shared/calls/outbound.py) -------------------------------------------------------------------------


@bp.route(route="calls", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
async def calls_place(req: func.HttpRequest) -> func.HttpResponse:
    """`{"customer_id" | "phone", "purpose": {"agent", "opening"}, "consent"?}` (functions/api/outbound.py): call a
    customer; the same `Idempotency-Key` places one call however often the request is sent."""
    from functions.api.outbound import PlacedCall, call_request
    from functions.api.parsing import parse_body
    from functions.http import TooManyRequests, idempotency_key
    from shared.calls.outbound import CallRequest, NoConsent, OutboundCalls, RateLimited

    services = await get_services()
    body = parse_body(req, call_request(tuple(sorted(services.scenario.agents))))
    key = idempotency_key(req)
    consent = body.consent and {"given_at": body.consent.given_at.strip(), "source": body.consent.source.strip()}
    request = CallRequest(body.purpose.agent, body.purpose.opening.strip(), body.customer_id, body.phone, consent)
    try:
        placed = await OutboundCalls(services).place(request, idempotency_key=key)
    except RateLimited as exc:
        raise TooManyRequests(str(exc), exc.retry_after) from None
    except NoConsent as exc:  # a body the schema allows, refused for what only the records tell (docs/outbound.md)
        return error(400, str(exc))
    except CallRejected as exc:
        return error(409, str(exc))
    return json_response(PlacedCall(**placed), status=201)


@bp.route(route="calls/placed/{call_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
async def calls_placed_get(req: func.HttpRequest) -> func.HttpResponse:
    """How a call we placed is going: state and `outcome` (answered, voicemail, busy, no_answer, failed)."""
    from functions.api.outbound import PlacedCallStatus

    call_id = req.route_params.get("call_id", "")
    if not call_id.startswith("out-"):
        return error(404, f"no call {call_id!r} placed by us")
    record = await CallService(await get_services()).describe(call_id)
    return json_response(PlacedCallStatus(call_id=call_id, session_id=record.get("session_id"),
                                          state=record.get("state"), outcome=record.get("outcome"),
                                          session_status=record.get("session_status")))
