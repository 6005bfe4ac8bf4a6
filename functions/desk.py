"""The desk over HTTP: the people in the contact center sign in, take customers from the queue and talk to them.

Every route but the page itself needs a person signed in with a desk role. Who they are comes from the principal
headers App Service built-in authentication injects (shared/principal.py); a request without them gets 401 and the
sign-in link, whatever else it carries (a customer's web chat token opens nothing here). Triggers only parse, call
the desk (shared/desk.py) and answer; the desk's rules (who may claim, who holds a customer) live there.

The customer hears the person on their own channel: on web chat the chat page reads the session, on WhatsApp and SMS
that channel's service sends what the person wrote (its `on_person_say` and `deliver_owed`), and a call is put
through to the person's phone by the call service. docs/desk.md tells the whole story.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.synthesis import start_synthesis
from functions.http import Forbidden, Handler, handles_errors, idempotency_key, json_response
from shared import principal
from shared.bootstrap import Services, get_services
from shared.conversation import DESK_PHRASES
from shared.desk import DeskAgent, OnSay
from shared.errors import Conflict, NotFound, SwitchboardError, Unauthorized
from shared.models import Channel, Customer
from shared.sms.service import SmsService
from shared.synthesis import DESK_DISPOSITION
from shared.whatsapp.service import WhatsAppService

log = logging.getLogger(__name__)

bp = df.Blueprint()

DESK_PATH = "/api/desk"
#: Where a person signs in and out (the platform's routes; locally the host serves them, local/auth.py).
SIGN_IN = f"/.auth/login/aad?post_login_redirect_uri={DESK_PATH}"
SIGN_OUT = f"/.auth/logout?post_logout_redirect_uri={DESK_PATH}"

_PAGE = Path(__file__).parent / "static" / "desk.html"
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.lru_cache(maxsize=1)
def _page() -> bytes:
    return _PAGE.read_bytes()


class NotSignedIn(Unauthorized):
    """No person is signed in on this request: the answer carries the sign-in link."""


def signed_in(handler: Handler) -> Handler:
    """Answer 401 with the sign-in link when nobody is signed in; other errors as every route answers them."""

    @functools.wraps(handler)
    async def wrapper(req: func.HttpRequest, **bindings: Any) -> func.HttpResponse:
        try:
            return await handler(req, **bindings)
        except NotSignedIn as exc:
            return json_response({"error": str(exc), "sign_in": SIGN_IN}, 401)

    return handles_errors(wrapper)


def _agent(req: func.HttpRequest) -> DeskAgent:
    """The person signed in, if the platform says so and they hold a desk role."""
    agent = principal.desk_agent(req.headers)
    if agent is None:
        raise NotSignedIn("sign in to use the desk")
    if not agent.roles & principal.DESK_ROLES:
        raise Forbidden("your account has no desk role: ask an administrator to assign you desk.agent")
    return agent


# The page ---------------------------------------------------------------------------------------------------------


@bp.route(route="desk", methods=["GET"])
async def desk_page(req: func.HttpRequest) -> func.HttpResponse:
    """The page loads for anyone; it asks /api/desk/me who is signed in and offers the sign-in when nobody is."""
    return func.HttpResponse(_page(), mimetype="text/html", charset="utf-8", headers=_PAGE_HEADERS)


# The person -------------------------------------------------------------------------------------------------------


@bp.route(route="desk/me", methods=["GET"])
@signed_in
async def desk_me(req: func.HttpRequest) -> func.HttpResponse:
    from functions.api.desk import DeskMe

    agent = _agent(req)
    services = await get_services()
    presence = await services.desk.touch(agent)
    return json_response(DeskMe(
        agent={"agent_id": agent.agent_id, "name": agent.name, "supervisor": agent.supervisor},
        presence=presence.to_dict(), sign_in=SIGN_IN, sign_out=SIGN_OUT,
    ))


@bp.route(route="desk/presence", methods=["POST"])
@signed_in
async def desk_presence(req: func.HttpRequest) -> func.HttpResponse:
    from functions.api.desk import PresenceUpdate
    from functions.api.parsing import parse_body

    agent = _agent(req)
    update = parse_body(req, PresenceUpdate)
    services = await get_services()
    presence = await services.desk.set_presence(agent, update.status, phone=update.phone, acs_user=update.acs_user)
    return json_response(presence.to_dict())


# The queue --------------------------------------------------------------------------------------------------------


@bp.route(route="desk/queue", methods=["GET"])
@signed_in
async def desk_queue(req: func.HttpRequest) -> func.HttpResponse:
    """Long poll: answers at once when the desk changed since `since` (or without it), else when it changes or after
    `wait` seconds. Each poll also keeps the person counted as at the desk."""
    from functions.api.desk import QueuePoll
    from functions.api.parsing import parse_query

    agent = _agent(req)
    poll = parse_query(req, QueuePoll)
    services = await get_services()
    desk = services.desk
    await desk.touch(agent)
    version = await desk.version() if poll.since is None else await desk.wait_for_change(poll.since, poll.wait)
    body: dict[str, Any] = {
        "version": version,  # read before the lists: a change after it shows on the next poll
        "waiting": await desk.waiting(),
        "mine": await desk.claimed_by(agent.agent_id),
        "presence": (await desk.presence(agent.agent_id)).to_dict(),
    }
    if agent.supervisor:
        body["metrics"] = await desk.metrics()
    return json_response(body)


@bp.route(route="desk/metrics", methods=["GET"])
@signed_in
async def desk_metrics(req: func.HttpRequest) -> func.HttpResponse:
    agent = _agent(req)
    if not agent.supervisor:
        raise Forbidden("only supervisors see the desk's figures (the desk.supervisor role)")
    services = await get_services()
    return json_response(await services.desk.metrics())


# One customer -----------------------------------------------------------------------------------------------------


@bp.route(route="desk/escalations/{escalation_id}", methods=["GET"])
@signed_in
async def desk_escalation(req: func.HttpRequest) -> func.HttpResponse:
    """Everything about the customer: who they are, what was collected, the summary and every channel's transcript."""
    _agent(req)
    services = await get_services()
    return json_response(await services.desk.context(req.route_params["escalation_id"]))


@bp.route(route="desk/escalations/{escalation_id}/claim", methods=["POST"])
@signed_in
async def desk_claim(req: func.HttpRequest) -> func.HttpResponse:
    """Take the customer. Of people claiming at once exactly one wins; the others get 409 naming who has them."""
    from functions.api.desk import ClaimRequest
    from functions.api.parsing import parse_body

    agent = _agent(req)
    parse_body(req, ClaimRequest, allow_empty=True)
    services = await get_services()
    escalation_id = req.route_params["escalation_id"]
    entry = await services.desk.entry(escalation_id)
    if entry["channel"] == Channel.VOICE.value:
        await _claim_call(services, escalation_id, agent)
        customer = await services.customers.get(entry["customer_id"])
        escalation = customer.find_escalation(escalation_id)
        if escalation is None:
            raise NotFound(f"no escalation {escalation_id!r} on this customer's record")
    else:
        joined = _phrase(services, "person_joined", person=agent.name)
        escalation = await services.desk.claim(escalation_id, agent, joined=joined, on_say=_on_say(services, entry))
        await _deliver(services, entry)
    return json_response({"escalation": escalation.to_dict()})


@bp.route(route="desk/escalations/{escalation_id}/messages", methods=["POST"])
@signed_in
async def desk_say(req: func.HttpRequest) -> func.HttpResponse:
    """The person writes to the customer they have, on the customer's channel. With an Idempotency-Key, a retry after
    a lost answer saves (and sends) the message once."""
    from functions.api.desk import desk_message_request
    from functions.api.parsing import parse_body

    agent = _agent(req)
    services = await get_services()
    text = parse_body(req, desk_message_request(services.settings.webchat_max_message_chars)).text
    key = idempotency_key(req)
    escalation_id = req.route_params["escalation_id"]
    entry = await services.desk.entry(escalation_id)
    if entry["channel"] == Channel.VOICE.value:
        raise Conflict("this customer is on a call: talk to them on the phone")
    customer = await services.desk.say(escalation_id, agent, text, on_say=_on_say(services, entry), key=key)
    await _deliver(services, entry)
    return json_response({"turn": _said(customer, entry["session_id"], key)})


@bp.route(route="desk/escalations/{escalation_id}/return", methods=["POST"])
@signed_in
async def desk_hand_back(req: func.HttpRequest) -> func.HttpResponse:
    """The person is done: the AI carries on with the customer, who is told so."""
    from functions.api.desk import HandBackRequest
    from functions.api.parsing import parse_body

    agent = _agent(req)
    note = parse_body(req, HandBackRequest, allow_empty=True).note.strip()
    services = await get_services()
    escalation_id = req.route_params["escalation_id"]
    entry = await services.desk.entry(escalation_id)
    if entry["channel"] == Channel.VOICE.value:
        raise Conflict("a call put through to a person cannot go back to the assistant: close it instead")
    escalation = await services.desk.hand_back(
        escalation_id, agent, farewell=_phrase(services, "person_returned"), note=note,
        on_say=_on_say(services, entry),
    )
    await _deliver(services, entry)
    return json_response({"escalation": escalation.to_dict()})


@bp.route(route="desk/escalations/{escalation_id}/close", methods=["POST"])
@bp.durable_client_input(client_name="client")
@signed_in
async def desk_close(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The person resolved it: the disposition and the note go on the customer's record, and the conversation's
    synthesis is written there (functions/synthesis.py)."""
    from functions.api.desk import CloseRequest
    from functions.api.parsing import parse_body

    agent = _agent(req)
    body = parse_body(req, CloseRequest)
    disposition, note = body.disposition, body.note.strip()
    services = await get_services()
    escalation_id = req.route_params["escalation_id"]
    entry = await services.desk.entry(escalation_id)
    voice = entry["channel"] == Channel.VOICE.value
    escalation = await services.desk.close(
        escalation_id, agent, disposition=disposition, note=note,
        farewell="" if voice else _phrase(services, "person_closed"), on_say=_on_say(services, entry),
    )
    await _deliver(services, entry)
    await start_synthesis(client, entry["customer_id"], escalation.session_id, DESK_DISPOSITION, escalation_id)
    return json_response({"escalation": escalation.to_dict()})


# Channels ---------------------------------------------------------------------------------------------------------


async def _claim_call(services: Services, escalation_id: str, agent: DeskAgent) -> None:
    """A caller is put through to the person (their phone or ACS user) by the call service."""
    from shared.calls.service import CallService  # the call service pulls in Call Automation: only for calls

    claim_call = getattr(CallService(services), "claim_call", None)
    if claim_call is None:
        raise Conflict("calls cannot be routed yet")
    await claim_call(escalation_id, agent)


def _sender(services: Services, entry: dict[str, Any]) -> WhatsAppService | SmsService | None:
    """The service that sends a person's words on the customer's channel; None where the customer reads them from
    the session (web chat) or hears the person on the phone."""
    channel = entry.get("channel")
    if channel == Channel.WHATSAPP.value:
        return services.whatsapp
    if channel == Channel.SMS.value:
        return services.sms
    return None


def _on_say(services: Services, entry: dict[str, Any]) -> OnSay | None:
    """What the channel adds to the write that saves a person's words (WhatsApp and SMS note the send they owe)."""
    sender = _sender(services, entry)
    return sender.on_person_say if sender is not None else None


async def _deliver(services: Services, entry: dict[str, Any]) -> None:
    """Send a WhatsApp or SMS customer what the person wrote. The words are saved already, as owed: a send that fails
    now is made by the next delivery, so the person is not told their message failed when it did not."""
    sender = _sender(services, entry)
    if sender is None:
        return
    try:
        await sender.deliver_owed(entry["customer_id"], entry["session_id"])
    except SwitchboardError as exc:
        log.warning("could not send the person's message by %s now (it stays owed): %s", entry.get("channel"), exc)


# Parsing ----------------------------------------------------------------------------------------------------------


def _phrase(services: Services, key: str, **values: object) -> str:
    template = services.scenario.phrases.get(key, DESK_PHRASES[key])
    return template.format(company=services.scenario.company, **values)


def _said(customer: Customer, session_id: str, key: str | None) -> dict[str, Any]:
    """The person's message as saved: the one under `key` (a retry's), else the latest."""
    turns = customer.sessions[session_id].turns
    turn = next((t for t in reversed(turns) if key is not None and t.person and t.key == key), turns[-1])
    return {"role": turn.role, "text": turn.text, "agent": turn.agent, "at": turn.at, "person": turn.person}
