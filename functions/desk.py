"""The desk over HTTP: the people in the contact center sign in, take customers from the queue and talk to them.

Every route but the page itself needs a person signed in with a desk role. Who they are comes from the principal
headers App Service built-in authentication injects (shared/principal.py); a request without them gets 401 and the
sign-in link, whatever else it carries (a customer's web chat token opens nothing here). Triggers only parse, call
the desk (shared/desk.py) and answer; the desk's rules (who may claim, who holds a customer) live there.

The customer hears the person on their own channel: on web chat the chat page reads the session, on WhatsApp the
WhatsApp service sends what the person wrote (its `on_person_say` and `deliver_owed`, when the service has them), and
a call is put through to the person's phone by the call service. docs/desk.md tells the whole story.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.http import (
    Forbidden, Handler, handles_errors, idempotency_key, json_body, json_response, query_int, query_seconds,
)
from shared import principal
from shared.bootstrap import Services, get_services
from shared.conversation import DESK_PHRASES
from shared.desk import AVAILABLE, AWAY, MAX_POLL_SECONDS, DeskAgent, OnSay
from shared.errors import Conflict, InvalidInput, NotFound, SwitchboardError, Unauthorized
from shared.models import Channel, Customer

log = logging.getLogger(__name__)

bp = df.Blueprint()

DESK_PATH = "/api/desk"
#: Where a person signs in and out (the platform's routes; locally the host serves them, local/auth.py).
SIGN_IN = f"/.auth/login/aad?post_login_redirect_uri={DESK_PATH}"
SIGN_OUT = f"/.auth/logout?post_logout_redirect_uri={DESK_PATH}"
DISPOSITIONS = ("resolved", "follow_up", "callback", "not_resolved")
MAX_NOTE_CHARS = 2000
MAX_ACS_USER_CHARS = 256
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_ACS_USER = re.compile(r"8:[\x21-\x7e]+")  # an ACS communication identifier, e.g. 8:acs:<resource>_<id>

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
    async def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return await handler(req)
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
    agent = _agent(req)
    services = await get_services()
    presence = await services.desk.touch(agent)
    return json_response({
        "agent": {"agent_id": agent.agent_id, "name": agent.name, "supervisor": agent.supervisor},
        "presence": presence.to_dict(),
        "sign_in": SIGN_IN,
        "sign_out": SIGN_OUT,
    })


@bp.route(route="desk/presence", methods=["POST"])
@signed_in
async def desk_presence(req: func.HttpRequest) -> func.HttpResponse:
    agent = _agent(req)
    body = json_body(req)
    _only(body, {"status", "phone", "acs_user"})
    status = body.get("status")
    if status not in (AVAILABLE, AWAY):
        raise InvalidInput('"status" is required and must be "available" or "away"')
    phone = _optional_text(body, "phone", 16)
    if phone and not _E164.fullmatch(phone):
        raise InvalidInput('"phone" must be a number in international form, like +15551234567 ("" clears it)')
    acs_user = _optional_text(body, "acs_user", MAX_ACS_USER_CHARS)
    if acs_user and not _ACS_USER.fullmatch(acs_user):
        raise InvalidInput('"acs_user" must be an ACS user id, like 8:acs:... ("" clears it)')
    services = await get_services()
    presence = await services.desk.set_presence(agent, status, phone=phone, acs_user=acs_user)
    return json_response(presence.to_dict())


# The queue --------------------------------------------------------------------------------------------------------


@bp.route(route="desk/queue", methods=["GET"])
@signed_in
async def desk_queue(req: func.HttpRequest) -> func.HttpResponse:
    """Long poll: answers at once when the desk changed since `since` (or without it), else when it changes or after
    `wait` seconds. Each poll also keeps the person counted as at the desk."""
    agent = _agent(req)
    since = query_int(req, "since")
    wait = query_seconds(req, "wait", MAX_POLL_SECONDS)
    services = await get_services()
    desk = services.desk
    await desk.touch(agent)
    version = await desk.version() if since is None else await desk.wait_for_change(since, wait)
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
    agent = _agent(req)
    _only(json_body(req, allow_empty=True), set())
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
    agent = _agent(req)
    services = await get_services()
    body = json_body(req)
    _only(body, {"text"})
    text = _required_text(body, "text", services.settings.webchat_max_message_chars)
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
    agent = _agent(req)
    body = json_body(req, allow_empty=True)
    _only(body, {"note"})
    note = _optional_text(body, "note", MAX_NOTE_CHARS) or ""
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
@signed_in
async def desk_close(req: func.HttpRequest) -> func.HttpResponse:
    """The person resolved it: the disposition and the note go on the customer's record."""
    agent = _agent(req)
    body = json_body(req)
    _only(body, {"disposition", "note"})
    disposition = body.get("disposition")
    if disposition not in DISPOSITIONS:
        raise InvalidInput(f'"disposition" is required and must be one of: {", ".join(DISPOSITIONS)}')
    note = _optional_text(body, "note", MAX_NOTE_CHARS) or ""
    services = await get_services()
    escalation_id = req.route_params["escalation_id"]
    entry = await services.desk.entry(escalation_id)
    voice = entry["channel"] == Channel.VOICE.value
    escalation = await services.desk.close(
        escalation_id, agent, disposition=disposition, note=note,
        farewell="" if voice else _phrase(services, "person_closed"), on_say=_on_say(services, entry),
    )
    await _deliver(services, entry)
    return json_response({"escalation": escalation.to_dict()})


# Channels ---------------------------------------------------------------------------------------------------------


async def _claim_call(services: Services, escalation_id: str, agent: DeskAgent) -> None:
    """A caller is put through to the person (their phone or ACS user) by the call service."""
    from shared.calls.service import CallService  # the call service pulls in Call Automation: only for calls

    claim_call = getattr(CallService(services), "claim_call", None)
    if claim_call is None:
        raise Conflict("calls cannot be routed yet")
    await claim_call(escalation_id, agent)


def _on_say(services: Services, entry: dict[str, Any]) -> OnSay | None:
    """What the channel adds to the write that saves a person's words (WhatsApp notes the send it owes)."""
    if entry.get("channel") != Channel.WHATSAPP.value:
        return None
    return getattr(services.whatsapp, "on_person_say", None)


async def _deliver(services: Services, entry: dict[str, Any]) -> None:
    """Send a WhatsApp customer what the person wrote. The words are saved already, as owed: a send that fails now
    is made by the next delivery, so the person is not told their message failed when it did not."""
    if entry.get("channel") != Channel.WHATSAPP.value:
        return
    deliver_owed = getattr(services.whatsapp, "deliver_owed", None)
    if deliver_owed is None:
        return
    try:
        await deliver_owed(entry["customer_id"], entry["session_id"])
    except SwitchboardError as exc:
        log.warning("could not send the person's message to WhatsApp now (it stays owed): %s", exc)


# Parsing ----------------------------------------------------------------------------------------------------------


def _phrase(services: Services, key: str, **values: object) -> str:
    template = services.scenario.phrases.get(key, DESK_PHRASES[key])
    return template.format(company=services.scenario.company, **values)


def _said(customer: Customer, session_id: str, key: str | None) -> dict[str, Any]:
    """The person's message as saved: the one under `key` (a retry's), else the latest."""
    turns = customer.sessions[session_id].turns
    turn = next((t for t in reversed(turns) if key is not None and t.person and t.key == key), turns[-1])
    return {"role": turn.role, "text": turn.text, "agent": turn.agent, "at": turn.at, "person": turn.person}


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    if unknown := set(body) - allowed:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")


def _required_text(body: dict[str, Any], name: str, max_chars: int) -> str:
    text = body.get(name)
    if not isinstance(text, str):
        raise InvalidInput(f'"{name}" is required and must be a string')
    if not text.strip():
        raise InvalidInput(f'"{name}" must not be empty')
    if len(text) > max_chars:
        raise InvalidInput(f'"{name}" is {len(text)} characters; the limit is {max_chars}')
    return text


def _optional_text(body: dict[str, Any], name: str, max_chars: int) -> str | None:
    if name not in body:
        return None
    text = body[name]
    if not isinstance(text, str):
        raise InvalidInput(f'"{name}" must be a string')
    if len(text) > max_chars:
        raise InvalidInput(f'"{name}" is {len(text)} characters; the limit is {max_chars}')
    return text.strip()
