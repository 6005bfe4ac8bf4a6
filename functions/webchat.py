"""Web chat over HTTP: create a session, send messages, read the transcript, and the chat page itself.

Each session gets a signed, expiring bearer token bound to it (and to its customer); a token for one session is
refused on another. Triggers only parse, call the conversation core and answer.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.after_turn import start_what_the_turn_set_going
from functions.handoff import notify_engaged
from functions.http import (
    Forbidden, bearer_token, client_address, handles_errors, idempotency_key, json_response, rate_limit,
)
from shared import telemetry
from shared.bootstrap import Services, get_services
from shared.errors import NotFound, Unauthorized
from shared.models import Channel, ChannelSession, Customer, EscalationStatus, Identity, IdentityKind, new_id

bp = df.Blueprint()

TOKEN_AUDIENCE = "webchat"
_PAGE = Path(__file__).parent / "static" / "webchat.html"
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=1)
def _page() -> bytes:
    return _PAGE.read_bytes()


@bp.route(route="webchat", methods=["GET"])
async def webchat_page(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(_page(), mimetype="text/html", charset="utf-8", headers=_PAGE_HEADERS)


@bp.route(route="webchat/sessions", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handles_errors
async def webchat_create_session(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """A new conversation, or, with a handoff link's token, the continuation of one from another channel."""
    from functions.api.parsing import parse_body
    from functions.api.webchat import CreateSessionRequest, SessionCreated

    started = time.time_ns()
    services = await get_services()
    # Each session makes a customer record: one address may start only so many (docs/security.md).
    limit, window = services.settings.webchat_sessions_per_address, services.settings.webchat_sessions_window_seconds
    await rate_limit(services.state, f"webchat-sessions:{client_address(req)}", limit, window, "new web chat sessions")
    body = parse_body(req, CreateSessionRequest, allow_empty=True)
    session_id = new_id("web")
    if body.handoff_token is not None:
        customer_id, used = await _redeem_handoff_link(services, body.handoff_token)
        try:
            opened = await services.conversation.open(Channel.WEBCHAT, session_id, customer_id)
        except BaseException:
            await services.state.release_processed(used)  # nothing was opened: the link still works
            raise
        if opened.continued is not None:
            # The continuation joins the handoff's trace: it started when this request did, linked to its span.
            with telemetry.continuing("webchat.continue", opened.continued.traceparent, start_time=started,
                                      session_id=session_id, customer_id=customer_id):
                await notify_engaged(client, opened.continued, session_id)
    else:
        opened = await services.conversation.open_for_identity(
            Channel.WEBCHAT, session_id, Identity(IdentityKind.WEBCHAT, session_id)
        )
    token = services.tokens.issue(
        TOKEN_AUDIENCE, services.settings.webchat_token_ttl_seconds, sid=session_id, cid=opened.customer.customer_id
    )
    return json_response(SessionCreated(session_id=session_id, token=token, agent=opened.agent,
                                        replies=[r.to_dict() for r in opened.replies]), status=201)


@bp.route(route="webchat/sessions/{session_id}/messages", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handles_errors
async def webchat_post_message(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from functions.api.parsing import parse_body
    from functions.api.webchat import MessageReplies, send_message_request

    services = await get_services()
    session_id, customer_id = _authorize(req, services)
    text = parse_body(req, send_message_request(services.settings.webchat_max_message_chars)).text
    key = idempotency_key(req)
    with telemetry.turn("webchat", session_id=session_id, customer_id=customer_id):
        outcome = await services.conversation.turn(session_id, customer_id, text, key=key)
        if outcome.replayed:
            telemetry.dedup_hit("webchat")
        # Where the customer stands with the desk, so the chat page knows at once to wait for a person's messages.
        escalation = await _escalation_view(services, outcome.customer, session_id)
        answer = MessageReplies(replies=[r.to_dict() for r in outcome.replies], agent=outcome.agent,
                                escalation=escalation)
        # Last: the answer is ready, and what the turn set going (a callback, a promise, a handoff) need not hold it
        # up; each start is idempotent by its id, so a retried request starts nothing twice.
        await start_what_the_turn_set_going(client, customer_id, session_id, Channel.WEBCHAT.value,
                                            switch_to=outcome.switch_to, promised=outcome.promised,
                                            callbacks_changed=outcome.callbacks_changed, customer=outcome.customer)
    return json_response(answer)


@bp.route(route="webchat/sessions/{session_id}/close", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handles_errors
async def webchat_close_session(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The customer is done: the session closes and its conversation's synthesis is written (once, however often
    the page sends this). A session that already ended (moved to another channel, expired) keeps how it ended."""
    from functions.api.common import NoFields
    from functions.api.parsing import parse_body
    from functions.api.webchat import ClosedSession
    from functions.synthesis import start_synthesis
    from shared.models import SessionStatus, utcnow

    services = await get_services()
    session_id, customer_id = _authorize(req, services)
    parse_body(req, NoFields, allow_empty=True)

    def close(customer: Customer) -> SessionStatus:
        session = customer.sessions.get(session_id)
        if session is None:
            raise NotFound(f"no session {session_id!r} for this customer")
        if session.status is SessionStatus.ACTIVE:
            session.status, session.updated_at = SessionStatus.COMPLETED, utcnow()
        return session.status

    _, status = await services.customers.update(customer_id, close)
    if status is SessionStatus.COMPLETED:  # the synthesis itself is written once, whoever starts it
        await start_synthesis(client, customer_id, session_id, "closed")
    await services.desk.touch_session(session_id)  # a page polling the session sees it close
    return json_response(ClosedSession(session_id=session_id, status=status.value))


@bp.route(route="webchat/sessions/{session_id}", methods=["GET"])
@handles_errors
async def webchat_get_session(req: func.HttpRequest) -> func.HttpResponse:
    """The transcript. With `after` (the turns the page has) and `wait`, a long poll: it answers once there are more
    turns than that, or the customer's place with the desk changes, or `wait` seconds pass; so a person's message
    reaches the page without it asking every second."""
    from functions.api.parsing import parse_query
    from functions.api.webchat import Transcript, TranscriptPoll

    services = await get_services()
    session_id, customer_id = _authorize(req, services)
    poll = parse_query(req, TranscriptPoll)
    after = poll.after
    deadline = time.monotonic() + poll.wait
    version = await services.desk.session_version(session_id)  # before reading: a change after it ends the wait
    session, escalation = await _session_view(services, session_id, customer_id)
    # A session keeps its latest MAX_TURNS_PER_SESSION turns, so past that the count stops growing: the last turn
    # changing says there is something new as well.
    seen, last = escalation, _last_turn(session)
    while after is not None and len(session.turns) <= after and escalation == seen and _last_turn(session) == last:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        changed = await services.desk.wait_for_session(session_id, version, remaining)
        if changed == version:
            break  # waited the whole time
        version = changed
        session, escalation = await _session_view(services, session_id, customer_id)
    return json_response(Transcript(
        session_id=session.session_id,
        agent=session.active_agent or services.scenario.start_agent,
        status=session.status.value,
        turns=[{"role": t.role, "text": t.text, "agent": t.agent, "at": t.at, "person": t.person}
               for t in session.turns],
        escalation=escalation,
        # How sure we are who this is (docs/security.md, "Verifying customers"): the page may say so.
        verification=session.verification.value,
    ))


def _last_turn(session: ChannelSession) -> tuple[str, str] | None:
    return (session.turns[-1].at, session.turns[-1].text) if session.turns else None


async def _session_view(services: Services, session_id: str, customer_id: str
                        ) -> tuple[ChannelSession, dict[str, Any] | None]:
    """The session, and where its customer stands with the desk: the latest escalation asked from this session."""
    session = await services.conversation.transcript(session_id, customer_id)
    customer = await services.customers.get(customer_id)
    return session, await _escalation_view(services, customer, session_id)


async def _escalation_view(services: Services, customer: Customer, session_id: str) -> dict[str, Any] | None:
    escalation = next((e for e in reversed(customer.escalations) if e.session_id == session_id), None)
    if escalation is None:
        return None
    waiting = escalation.status is EscalationStatus.WAITING
    return {
        "status": escalation.status.value,
        "agent_name": escalation.agent_name,
        "position": await services.desk.position(escalation.escalation_id) if waiting else None,
    }


async def _redeem_handoff_link(services: Services, token: str) -> tuple[str, str]:
    """The customer a handoff link belongs to, if the link is genuine, unexpired, unused and still wanted; and the
    key under which it is now marked used."""
    from shared.handoff import TOKEN_AUDIENCE as LINK_AUDIENCE

    try:
        claims = services.tokens.verify(token, LINK_AUDIENCE)
    except Unauthorized as exc:
        raise Unauthorized(f"this link cannot be used: {exc}") from None
    customer = await services.customers.get(str(claims["cid"]))
    handoff = customer.handoff
    if handoff is None or handoff.instance_id != claims.get("hid") or not handoff.open:
        raise Unauthorized("this link is no longer valid: the conversation has moved on or expired")
    used = f"handoff-link:{claims['jti']}"
    lifetime = services.settings.handoff_expire_after_seconds + services.settings.handoff_remind_after_seconds
    if not await services.state.mark_processed(used, lifetime):
        telemetry.dedup_hit("webchat_link")
        raise Unauthorized("this link has already been used")
    return customer.customer_id, used


def _authorize(req: func.HttpRequest, services: Services) -> tuple[str, str]:
    """(session id, customer id) if the bearer token is valid and was issued for the session in the path."""
    claims = services.tokens.verify(bearer_token(req), TOKEN_AUDIENCE)
    session_id = req.route_params.get("session_id", "")
    if claims.get("sid") != session_id:
        raise Forbidden("this token belongs to another session")
    return session_id, str(claims["cid"])
