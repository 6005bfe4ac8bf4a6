"""Notifications kept as promised: what an agent said we would send ("we'll text you when it's restored", a follow-up
after a booked visit) goes out once, on the customer's best channel, when its moment comes.

A tool's result names the promise (`ToolResult.promise`, "kind:ref"); the conversation core writes it on the customer
record with the turn (`Customer.add_promise`), which makes it a scheduled notification: its id is derived from the
customer and what was promised (`notification_id`), so the same promise made twice, or a redelivered turn, is one
notification. A ref may end in "@<ISO time>": the notification is due then (a visit's follow-up); otherwise it waits
for its condition (the outage restored). The scenario declares each kind (`PromiseSpec`, its tools.py's PROMISES):
the words, the agent who calls when a call is the only way, and how to tell from the scenario's data that the
moment came.

The turn's outcome says it recorded one (`TurnOutcome.promised`), and the channel starts its orchestration once the
reply is ready: a channel function with its Durable client (functions/notifications.py, `start_promised`), the media
gateway by asking the function app (`request_start`) off the turn. A Durable orchestration per notification waits
for that moment and calls `send`, which goes once whatever runs it twice: the record says whether it was kept, and
every send carries an id derived from the notification (ACS's repeatability id for WhatsApp and SMS, the outbound
call's idempotency key), so a send retried after a crash between the send and the record write reaches the customer
once.

The channel, best first: WhatsApp when the phone we would reach has a WhatsApp conversation on record (free text
inside the 24-hour window; outside it the text is held and the approved template invites the customer back, as for
any reply: shared/whatsapp/delivery.py), else SMS when the SMS channel is configured, else a call that opens with
the promised words (OutboundCalls.place, from ACS_CALL_FROM or else ACS_SMS_FROM, to the record's phone or the number
the customer gave to be reached on).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from shared.errors import NotFound
from shared.messenger.base import SendFailed
from shared.models import Channel, ChannelSession, Customer, Identity, IdentityKind, SessionStatus, Turn, utcnow

if TYPE_CHECKING:
    from shared.bootstrap import Services
    from shared.scenario import Scenario, ScenarioData

log = logging.getLogger(__name__)

#: The token audience of the start route (POST /api/notifications/start): the media gateway, which has no Durable
#: client, asks the function app to start the orchestration of a promise made on a call with it, as it asks for a
#: handoff. The channel functions start theirs themselves (functions/notifications.py, `start_promised`).
START_AUDIENCE = "notifications"
#: How long a start token lives: it is used at once.
START_TOKEN_TTL_SECONDS = 300
#: How long the gateway waits for the start route before leaving the start to the moment's trigger (module constant
#: for now: a settings knob if it ever needs tuning). It waits off the turn: the caller has heard the reply.
START_TIMEOUT_SECONDS = 5.0
#: When a notification is kept on WhatsApp, SMS or by a call.
WHATSAPP, WHATSAPP_TEMPLATE, SMS, CALL = "whatsapp", "whatsapp_template", "sms", "call"


@dataclass(frozen=True)
class PromiseSpec:
    """A kind of promise a scenario's tools make (tools.py's PROMISES maps kind -> this)."""

    # The words we send, after the company's name: (ref, what the record collected, the scenario's data) -> text.
    text: Callable[[str, dict[str, str], ScenarioData], str]
    # The agent a call opens with, when a call is the only way to reach the customer.
    agent: str
    # Whether the scenario's data says the moment came (the outage no longer listed as active): (ref, data) -> bool.
    # None: only its time or the back office's event (POST /api/ops/outages/{id}/restored) says so.
    happened: Callable[[str, ScenarioData], bool] | None = None


@dataclass(frozen=True)
class Notification:
    id: str
    customer_id: str
    kind: str
    ref: str  # as promised, "@due" included
    due: str | None  # ISO time: sent then; None: sent when its condition holds

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "customer_id": self.customer_id, "kind": self.kind, "ref": self.ref, "due": self.due}

    @property
    def event(self) -> str:
        """The back office's name for the moment (the key ops routes raise and `promises:happened` holds)."""
        return f"{self.kind}:{self.ref}"


def notification_id(customer_id: str, kind: str, ref: str) -> str:
    """One id per customer and promise: the same promise made twice (or its turn redelivered) is one notification."""
    return "ntf-" + hashlib.sha256(f"{customer_id}|{kind}|{ref}".encode()).hexdigest()[:24]


def due_of(ref: str) -> str | None:
    """"SR-12345@2025-06-06T18:00:00+00:00" is due then; a ref without "@" waits for its condition."""
    _, at, when = ref.rpartition("@")
    if not at:
        return None
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()


def notification_of(customer_id: str, promise: dict[str, Any]) -> Notification:
    kind, ref = promise["kind"], promise["ref"]
    return Notification(notification_id(customer_id, kind, ref), customer_id, kind, ref, due_of(ref))


def pending(customer: Customer) -> list[Notification]:
    """The promises on the record still to keep (neither sent nor given up), oldest first."""
    return [notification_of(customer.customer_id, p) for p in customer.promises if not kept_or_failed(p)]


def kept_or_failed(promise: dict[str, Any]) -> bool:
    return bool(promise.get("sent_at") or promise.get("error"))


def find(customer: Customer, notification: str) -> dict[str, Any] | None:
    """The promise on the record that `notification` (its id) keeps, the latest if it was made again since."""
    return next((p for p in reversed(customer.promises)
                 if notification_id(customer.customer_id, p["kind"], p["ref"]) == notification), None)


def promised_view(customer: Customer) -> list[dict[str, Any]]:
    """Each promise and whether and when it was kept, for the record's readers (the desk context)."""
    return [{"id": notification_id(customer.customer_id, p["kind"], p["ref"]), "kind": p["kind"], "ref": p["ref"],
             "promised_at": p.get("at"), "due": due_of(p["ref"]), "kept": bool(p.get("sent_at")),
             "kept_at": p.get("sent_at"), "channel": p.get("kept_by"), "error": p.get("error")}
            for p in customer.promises]


# What the scenario declares ----------------------------------------------------------------------------------------


def specs(scenario: Scenario) -> dict[str, PromiseSpec]:
    """The scenario's PROMISES (from its tools.py), {} when it declares none."""
    return _specs(scenario.path)


@lru_cache(maxsize=8)
def _specs(folder: Any) -> dict[str, PromiseSpec]:
    from shared.scenario import _tools_module  # the loader imports tools.py once; the same module holds PROMISES

    module = _tools_module(folder)
    declared = getattr(module, "PROMISES", None) if module is not None else None
    return dict(declared or {})


async def has_happened(services: Services, notification: Notification) -> bool:
    """Whether the moment came: the back office said so (the ops route), or the scenario's data does."""
    from shared.sms.promises import happened

    if notification.event in await happened(services.state):
        return True
    spec = specs(services.scenario).get(notification.kind)
    return bool(spec and spec.happened and spec.happened(notification.ref, services.scenario.data))


async def outage_restored(services: Services, outage_id: str) -> None:
    """The back office says the outage is over: remembered, so the agents say so from now on and each notification
    waiting for it reads it (`has_happened`). NotFound for an outage the scenario's data does not list."""
    from shared.sms.promises import _HAPPENED, INDEX_TTL_SECONDS

    if not any(str(o.get("id")) == outage_id for o in services.scenario.data.get("outages", [])):
        raise NotFound(f"no outage {outage_id!r} in the scenario's data")
    await services.state.add_member(_HAPPENED, f"outage_restored:{outage_id}", INDEX_TTL_SECONDS)


def text_for(scenario: Scenario, customer: Customer, promise: dict[str, Any]) -> str:
    """The words, after the company's name (a text from a business says who it is from)."""
    spec = specs(scenario).get(promise["kind"])
    if spec is None:  # a kind the scenario no longer declares: say what we promised, plainly
        return f"{scenario.company}: an update on {promise['ref']}."
    return f"{scenario.company}: {spec.text(promise['ref'], dict(customer.collected), scenario.data)}"


# Sending, once -----------------------------------------------------------------------------------------------------


async def send(services: Services, customer_id: str, notification: str) -> dict[str, Any]:
    """Keep the promise `notification` names, once: {"outcome": "sent" | "already_sent" | <why not>, "channel"}.
    Safe to run again and at once. Raises Unavailable while a store or ACS is out (the activity retries)."""
    try:
        customer = await services.customers.get(customer_id)
    except NotFound:
        return {"outcome": "no such customer"}
    promise = find(customer, notification)
    if promise is None:
        return {"outcome": "no promise on the record"}
    if promise.get("sent_at"):
        return {"outcome": "already_sent", "channel": promise.get("kept_by")}
    if promise.get("error"):
        return {"outcome": promise["error"]}
    text = text_for(services.scenario, customer, promise)
    phone = _phone(customer)
    if phone is None:
        return await _settle(services, customer_id, notification, None, None, "no phone number to reach")
    thread = await _whatsapp_thread(services, phone)
    if thread is not None:
        channel, message_id = await _whatsapp(services, thread, notification, text)
        return await _settle(services, customer_id, notification, channel, message_id, None)
    if services.texts.configured:
        from shared.sms.outbox import send_key

        try:
            message_id = await services.texts.text(
                phone, f"{text} Reply STOP to opt out.", key=send_key(notification),
                first_sent=datetime.fromisoformat(promise["at"]), tag=promise["kind"])
        except SendFailed as exc:
            log.warning("notification %s not sent by SMS: %s", notification, exc)
            reason = "opted out" if exc.code == "OptedOut" else f"refused: {exc.code or exc}"
            return await _settle(services, customer_id, notification, None, None, reason)
        return await _settle(services, customer_id, notification, SMS, message_id, None)
    return await _by_call(services, customer, phone, notification, promise)


def _phone(customer: Customer) -> str | None:
    from shared.router import phone_of

    return phone_of(customer)


async def _whatsapp_thread(services: Services, phone: str) -> tuple[str, str] | None:
    """(customer id, session id) of the latest WhatsApp conversation with `phone`: the customer has WhatsApp, and
    the notification joins that thread (whichever channel the promise was made on)."""
    holder = await services.customers.find_by_identity(Identity(IdentityKind.PHONE, phone))
    if holder is None:
        return None
    threads = [s for s in holder.sessions.values() if s.channel is Channel.WHATSAPP and s.loaded]
    if not threads:
        return None
    latest = max(threads, key=lambda s: (s.status is SessionStatus.ACTIVE, s.last_inbound_at or "", s.updated_at))
    return holder.customer_id, latest.session_id


async def _whatsapp(services: Services, thread: tuple[str, str], notification: str, text: str) -> tuple[str, str | None]:
    """Log the text on the WhatsApp thread (to go now inside the window; held behind the template outside it) and
    send what the thread owes. Returns how it went out and the text's message id, if it did."""
    from shared.whatsapp import delivery

    customer_id, session_id = thread
    key = delivery.send_key(notification, "notification")
    template = services.scenario.whatsapp.template.name if services.scenario.whatsapp.template else ""
    now = datetime.now(timezone.utc)

    def log_it(record: Customer) -> None:
        session = record.sessions[session_id]
        if session.message(key=key) is None:  # an earlier run logged it: it goes (or went) under that key
            session.add_turn(Turn(role="agent", text=text, agent=None))
            delivery.record_person(session, [text], [key], template, now)

    await services.customers.update(customer_id, log_it)
    await services.whatsapp.deliver_owed(customer_id, session_id)
    session: ChannelSession = (await services.customers.get(customer_id)).sessions[session_id]
    logged = session.message(key=key)
    if logged is not None and logged.message_id:
        return WHATSAPP, logged.message_id
    return WHATSAPP_TEMPLATE, None  # held until the customer answers the template


async def _by_call(services: Services, customer: Customer, phone: str, notification: str,
                   promise: dict[str, Any]) -> dict[str, Any]:
    """The last way: a call. Without a number to call from, or with a number we may not call, no retry helps: the
    record says why, for people to act on. A call still being placed by a concurrent run (Conflict) is retried."""
    from shared.calls.outbound import NoConsent, caller_id

    if not caller_id(services.settings):
        return await _settle(services, customer.customer_id, notification, None, None,
                             "no way to reach: no WhatsApp conversation, no SMS number and no number to call from")
    try:
        call_id = await _call(services, customer, phone, notification, promise)
    except (NotFound, NoConsent) as exc:
        log.warning("notification %s not sent by a call: %s", notification, exc)
        return await _settle(services, customer.customer_id, notification, None, None, f"cannot call: {exc}")
    return await _settle(services, customer.customer_id, notification, CALL, call_id, None)


async def _call(services: Services, customer: Customer, phone: str, notification: str,
                promise: dict[str, Any]) -> str:
    """Place the call that says the promised words, once per notification (its idempotency key); its call id.
    `phone` may be the number the customer gave to be reached on (a web chat customer's), not an identity."""
    from shared.calls.outbound import CallRequest, OutboundCalls

    spec = specs(services.scenario).get(promise["kind"])
    agent = spec.agent if spec and spec.agent in services.scenario.agents else services.scenario.start_agent
    request = CallRequest(agent, _opening(services.scenario, customer, promise), customer_id=customer.customer_id,
                          phone=phone, consent={"given_at": promise["at"],
                                                "source": f"promised {promise['kind']} on {promise.get('channel')}"})
    placed = await OutboundCalls(services).place(request, idempotency_key=f"notification:{notification}")
    return str(placed.get("call_id") or "")


def _opening(scenario: Scenario, customer: Customer, promise: dict[str, Any]) -> str:
    """What a person who picks up hears first: who calls, then the promised words (the text's own "<company>:"
    prefix would say the company's name twice)."""
    spec = specs(scenario).get(promise["kind"])
    if spec is None:
        return f"Hello, this is {scenario.company}, calling as promised with an update on {promise['ref']}."
    words = spec.text(promise["ref"], dict(customer.collected), scenario.data)
    return f"Hello, this is {scenario.company}, calling as promised: {words}"


async def _settle(services: Services, customer_id: str, notification: str, channel: str | None,
                  message_id: str | None, error: str | None) -> dict[str, Any]:
    def record(customer: Customer) -> dict[str, Any]:
        promise = find(customer, notification)
        if promise is None:
            return {"outcome": "no promise on the record"}
        if promise.get("sent_at"):  # a concurrent run recorded the same send (ACS took it once)
            return {"outcome": "already_sent", "channel": promise.get("kept_by")}
        if error:
            promise["error"] = error
            return {"outcome": error}
        promise["sent_at"], promise["kept_by"], promise["message_id"] = utcnow(), channel, message_id
        return {"outcome": "sent", "channel": channel}

    _, outcome = await services.customers.update(customer_id, record)
    log.info("notification %s: %s", notification, outcome)
    return outcome


# Asking the function app to start the orchestration ----------------------------------------------------------------


async def request_start(customer_id: str) -> None:
    """Ask the function app to start the orchestrations of the customer's pending promises (POST
    /api/notifications/start). For the media gateway, which has no Durable client: it asks after the reply has been
    spoken, in a task of its own (media_gateway/agent.py), as it asks for a handoff. Best effort: the promise is on
    the record, and the moment's trigger (the ops route) starts what was not started."""
    import httpx

    try:
        url, token = _start_request(customer_id)
        async with httpx.AsyncClient(timeout=START_TIMEOUT_SECONDS) as client:
            response = await client.post(url, headers={"Authorization": f"Bearer {token}"})
        if response.status_code >= 300:
            log.warning("notifications of %s not started: %s %s", customer_id, response.status_code,
                        response.text[:200])
    except Exception as exc:  # noqa: BLE001 - a turn must not fail for it (no settings, the app not answering)
        log.warning("notifications of %s not started now (%s); the moment's trigger starts them", customer_id, exc)


def _start_request(customer_id: str) -> tuple[str, str]:
    settings, tokens = _signer()
    token = tokens.issue(START_AUDIENCE, START_TOKEN_TTL_SECONDS, cid=customer_id)
    return f"{settings.public_url.rstrip('/')}/api/notifications/start", token


@lru_cache(maxsize=1)
def _signer() -> tuple[Any, Any]:
    from shared.bootstrap import settings_from_env
    from shared.tokens import TokenSigner, load_secret

    settings = settings_from_env()
    return settings, TokenSigner(load_secret(settings.token_secret, settings.data_dir))
