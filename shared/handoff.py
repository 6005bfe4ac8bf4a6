"""The steps of a channel handoff, as plain async functions the Durable activities call.

Each step is safe to run twice (Durable replays, hosts crash, Event Grid redelivers): record changes are guarded by
the handoff's status on the customer record, and every message goes out with a repeatability id derived from the
orchestration id and the step, so a second run is recognised by the channel instead of becoming a second message.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial

from shared import telemetry
from shared.bootstrap import Services
from shared.errors import Conflict, SwitchboardError
from shared.messenger.base import TemplateMessage
from shared.models import Channel, Customer, Handoff, HandoffStatus, Identity, IdentityKind, SessionStatus, utcnow
from shared.router import phone_of
from shared.scenario import WhatsAppTemplate
from shared.whatsapp.events import DeliveryStatus

log = logging.getLogger(__name__)

TOKEN_AUDIENCE = "handoff"
_REPEATABILITY = uuid.UUID("6f1b7f55-9a1c-4d7e-9c7e-3f1f0c2a7b10")  # namespace for deterministic send ids


@dataclass(frozen=True)
class HandoffPlan:
    """What an orchestration is asked to do; its JSON is the orchestration input."""

    instance_id: str
    customer_id: str
    from_session_id: str
    from_channel: str
    to_channel: str
    remind_after_seconds: float
    expire_after_seconds: float
    traceparent: str | None = None  # the handoff's start span (W3C): activities and the new channel continue its trace

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HandoffPlan:
        return cls(**data)


def instance_id_for(from_session_id: str) -> str:
    """One handoff per session: accepting twice (a retried request, a redelivered event) finds the same instance."""
    return f"handoff-{from_session_id}"


async def summarise(services: Services, plan: HandoffPlan) -> str:
    customer = await services.customers.get(plan.customer_id)
    session = customer.sessions.get(plan.from_session_id)
    if session is not None and not session.loaded:  # closed before we got here (the call ended): read it whole
        customer.sessions[plan.from_session_id] = await services.customers.get_session(customer.customer_id, session.session_id)
    return await services.policy.summarise(services.scenario, customer, plan.from_session_id)


async def save_context(services: Services, plan: HandoffPlan, summary: str) -> str:
    """Summary on the record, the old session marked transferred, the handoff remembered for the new channel.

    Returns the id of the record that now carries the handoff. For WhatsApp that is whoever holds the customer's
    phone number, because that is who the WhatsApp message will be from: a web chat visitor who gave the number of
    a known customer is that customer, so the conversation and what it collected move onto their record.
    """

    def save(customer: Customer) -> None:
        customer.summary = summary
        session = customer.sessions.get(plan.from_session_id)
        if session is not None and session.status is SessionStatus.ACTIVE:
            session.status = SessionStatus.TRANSFERRED
        for earlier in customer.sessions.values():
            # An older conversation on the target channel is over: the customer's next message there opens the
            # session that continues this one.
            if earlier.channel.value == plan.to_channel and earlier.status is SessionStatus.ACTIVE:
                earlier.status = SessionStatus.COMPLETED
        if customer.handoff is None or customer.handoff.instance_id != plan.instance_id:
            customer.handoff = Handoff(
                plan.instance_id, plan.from_session_id, Channel(plan.from_channel), Channel(plan.to_channel),
                traceparent=plan.traceparent,
            )

    source, _ = await services.customers.update(plan.customer_id, save)
    if plan.to_channel != Channel.WHATSAPP or (phone := phone_of(source)) is None:
        return source.customer_id
    identity = Identity(IdentityKind.PHONE, phone)
    owner = await services.customers.find_by_identity(identity)
    if owner is None:
        try:
            await services.customers.add_identity(source.customer_id, identity)
            return source.customer_id
        except Conflict:  # someone claimed the number meanwhile
            owner = await services.customers.find_by_identity(identity)
    if owner is None or owner.customer_id == source.customer_id:
        return source.customer_id

    # The session moves whole: the owner's record gets its transcript too, stored in the owner's partition.
    moved = source.sessions[plan.from_session_id]
    if not moved.loaded:
        moved = await services.customers.get_session(source.customer_id, plan.from_session_id)

    def take_over(customer: Customer) -> None:
        for key, value in source.collected.items():
            customer.collected.setdefault(key, value)
        customer.sessions.setdefault(plan.from_session_id, moved)
        save(customer)

    await services.customers.update(owner.customer_id, take_over)
    await services.customers.update(source.customer_id, partial(_hand_on, plan, owner.customer_id))
    log.info("handoff %s continues on %s's record, the holder of the phone number", plan.instance_id, owner.customer_id)
    return owner.customer_id


def _hand_on(plan: HandoffPlan, owner_id: str, customer: Customer) -> None:
    """The source record's copy of a handoff that moved to the phone owner's: closed, saying where it went. The
    orchestration only follows the owner's from here, so an open copy would stay open forever (and a link or a
    redelivery checking it would think the handoff still wanted)."""
    handoff = customer.handoff
    if handoff is not None and handoff.instance_id == plan.instance_id and handoff.open:
        handoff.status, handoff.moved_to, handoff.updated_at = HandoffStatus.MOVED, owner_id, utcnow()


async def invite(services: Services, plan: HandoffPlan) -> dict:
    """Invite the customer on the new channel. Returns what was sent, for the orchestration's status.

    A web chat link goes to the customer only: the status (readable with a function key, and kept in the task hub's
    history) says that a link was sent, never the link, whose token would let its reader take over the handoff.
    """
    customer = await services.customers.get(plan.customer_id)
    handoff = customer.handoff
    if handoff is None or handoff.instance_id != plan.instance_id or not handoff.open:
        # A re-run after this step failed the handoff says so again, so the orchestration ends rather than waits.
        failed = handoff is not None and handoff.instance_id == plan.instance_id and handoff.status is HandoffStatus.FAILED
        return {"sent": False, "reason": "the handoff is no longer open", **({"failed": True} if failed else {})}
    link = web_link(services, plan) if plan.to_channel == Channel.WEBCHAT else None
    template = services.scenario.whatsapp.invite if link is None else services.scenario.whatsapp.link_invite
    result = await _send_template(services, customer, plan, template, "invite", link)
    if not result["sent"] and link is not None:  # no WhatsApp for this customer: the link goes by text message
        result = await _send_link_by_sms(services, customer, plan, "invite", link, whatsapp=result["reason"])
    if not result["sent"] and link is None:
        # No way to reach them on WhatsApp: this handoff cannot happen, and the record must not say "invited" (nor
        # the orchestration wait, remind and expire) for a message that never went.
        await fail(services, plan, f"the invite could not be sent: {result['reason']}")
        return {**result, "failed": True}
    await _set_status(services, plan, HandoffStatus.INVITED, only_from={HandoffStatus.STARTED}, sent=("invite", result))
    return {**result, **({"link_sent": bool(result["sent"])} if link else {})}


async def remind(services: Services, plan: HandoffPlan) -> bool:
    """One reminder, unless the customer has already arrived. False when there was nobody left to remind."""
    customer = await services.customers.get(plan.customer_id)
    if customer.handoff is None or customer.handoff.instance_id != plan.instance_id or not customer.handoff.open:
        return False
    link = web_link(services, plan) if plan.to_channel == Channel.WEBCHAT else None
    result = await _send_template(services, customer, plan, services.scenario.whatsapp.reminder, "reminder", link)
    if not result["sent"] and link is not None:
        await _send_link_by_sms(services, customer, plan, "reminder", link, whatsapp=result["reason"])
    await _set_status(services, plan, HandoffStatus.REMINDED, only_from={HandoffStatus.STARTED, HandoffStatus.INVITED},
                      sent=("reminder", result))
    return True


async def whatsapp_failed(services: Services, customer_id: str, update: DeliveryStatus) -> None:
    """WhatsApp accepted a handoff's web chat link (the invite or the reminder), then reported it failed (`update`):
    the number has no WhatsApp, say. ACS accepts a message before WhatsApp tries it, so this failure comes late, as a
    delivery status; the link then goes by SMS, as it does when WhatsApp refuses it at once (`invite`).

    Once: the step is marked texted on the record when the text is accepted, and the caller holds the customer's
    lock (shared/whatsapp/service.py), so a status delivered again, or another about the same message, finds it
    texted. The text's repeatability id is the step's, as in `invite`, so a crash between sending and marking is
    recognised by ACS."""
    customer = await services.customers.get(customer_id)
    handoff = customer.handoff
    step = handoff.whatsapp_sent.get(update.message_id) if handoff is not None else None
    if handoff is None or step is None or not handoff.open or handoff.to_channel is not Channel.WEBCHAT:
        return  # a handoff to WhatsApp has no link to send another way; one that ended needs none
    if step in handoff.texted:
        log.info("handoff %s: the %s went by SMS already", handoff.instance_id, step)
        return
    plan = HandoffPlan(handoff.instance_id, customer_id, handoff.from_session_id, handoff.from_channel.value,
                       handoff.to_channel.value, services.settings.handoff_remind_after_seconds,
                       services.settings.handoff_expire_after_seconds, handoff.traceparent)
    result = await _send_link_by_sms(services, customer, plan, step, web_link(services, plan),
                                     whatsapp=update.error or "failed after it was accepted")
    if not result["sent"]:
        return

    def texted(record: Customer) -> None:
        if record.handoff is not None and record.handoff.instance_id == plan.instance_id \
                and step not in record.handoff.texted:
            record.handoff.texted.append(step)

    await services.customers.update(customer_id, texted)


async def expire(services: Services, plan: HandoffPlan) -> bool:
    """Nobody came: mark the handoff expired (the context stays on the record). False if they came after all."""
    expired = await _set_status(
        services, plan, HandoffStatus.EXPIRED, only_from={HandoffStatus.STARTED, HandoffStatus.INVITED, HandoffStatus.REMINDED}
    )
    if expired:
        customer = await services.customers.get(plan.customer_id)
        telemetry.handoff_outcome("expired", plan.to_channel, customer.handoff.started_at if customer.handoff else None)
    return expired


async def fail(services: Services, plan: HandoffPlan, reason: str) -> bool:
    """A step kept failing past its retries: the handoff is over, and the record says so (whatever context was saved
    stays). False if it had already ended (the customer came after all) or never reached the record."""
    failed = await _set_status(
        services, plan, HandoffStatus.FAILED, only_from={HandoffStatus.STARTED, HandoffStatus.INVITED, HandoffStatus.REMINDED}
    )
    if failed:
        customer = await services.customers.get(plan.customer_id)
        telemetry.handoff_outcome("failed", plan.to_channel, customer.handoff.started_at if customer.handoff else None)
    log.warning("handoff %s failed: %s", plan.instance_id, reason)
    return failed


def web_link(services: Services, plan: HandoffPlan) -> str:
    """A signed, expiring link to the chat page that binds the new web chat session to this customer.

    Single use: the web chat route records the token id (`jti`) when it accepts it.
    """
    token = services.tokens.issue(
        TOKEN_AUDIENCE, plan.expire_after_seconds + plan.remind_after_seconds,
        cid=plan.customer_id, hid=plan.instance_id, jti=plan.instance_id,
    )
    return f"{services.settings.public_url}/api/webchat?handoff={token}"


async def _send_template(
    services: Services, customer: Customer, plan: HandoffPlan, template: WhatsAppTemplate | None, step: str,
    link: str | None,
) -> dict:
    phone = phone_of(customer)
    if phone is None or template is None:
        why = "no phone number on record" if phone is None else f"the scenario has no {step} template"
        return {"sent": False, "reason": why}
    fields = {
        **customer.collected,
        "summary": customer.summary or "We have everything you told us.",
        "link": link or "Just reply to this message to continue.",
    }
    message = TemplateMessage(phone, template.name, template.language, tuple(template.values(services.scenario.company, fields)))
    try:
        message_id = await services.messenger.send(
            message,
            repeatability_id=str(uuid.uuid5(_REPEATABILITY, f"{plan.instance_id}:{step}")),
            first_sent=datetime.fromisoformat(customer.handoff.started_at if customer.handoff else utcnow()),
        )
    except SwitchboardError as exc:
        if exc.retryable:
            raise  # the activity fails and the orchestration's retry policy tries again
        log.warning("handoff %s: %s could not be sent: %s", plan.instance_id, step, exc)
        return {"sent": False, "reason": str(exc)}
    return {"sent": True, "message_id": message_id, "template": template.name}


async def _send_link_by_sms(services: Services, customer: Customer, plan: HandoffPlan, step: str, link: str, *,
                            whatsapp: str) -> dict:
    """The web chat link by text message, when WhatsApp could not take it (no WhatsApp on the number, none
    configured, or no template). Its repeatability id is derived from the handoff and the step, like the template's,
    so a re-run of the step is recognised by ACS and texts the customer once."""
    from shared.sms.outbox import send_key, sms_phrase

    phone = phone_of(customer)
    if phone is None or not services.texts.configured:
        why = "no phone number on record" if phone is None else "no SMS number is configured (ACS_SMS_FROM)"
        return {"sent": False, "reason": f"WhatsApp: {whatsapp}; SMS: {why}"}
    text = sms_phrase(services.scenario, "sms_link" if step == "invite" else "sms_link_reminder", link=link)
    try:
        message_id = await services.texts.text(
            phone, text, key=send_key(plan.instance_id, step, "sms"),
            first_sent=datetime.fromisoformat(customer.handoff.started_at if customer.handoff else utcnow()),
            tag=f"handoff_{step}")
    except SwitchboardError as exc:
        if exc.retryable:
            raise
        log.warning("handoff %s: the %s by SMS could not be sent either: %s", plan.instance_id, step, exc)
        return {"sent": False, "reason": f"WhatsApp: {whatsapp}; SMS: {exc}"}
    log.info("handoff %s: %s sent by SMS (WhatsApp: %s)", plan.instance_id, step, whatsapp)
    return {"sent": True, "message_id": message_id, "by": "sms"}


async def _set_status(services: Services, plan: HandoffPlan, status: HandoffStatus, *, only_from: set,
                      sent: tuple[str, dict] | None = None) -> bool:
    """Move the handoff to `status` if it is in one of `only_from`. `sent`: the step just sent and how; a WhatsApp
    message's id is remembered with it, so a `failed` status arriving later finds which step it was about."""

    def move(customer: Customer) -> bool:
        handoff = customer.handoff
        if handoff is None or handoff.instance_id != plan.instance_id:
            return False
        if sent is not None and sent[1].get("sent") and "by" not in sent[1]:  # it went by WhatsApp
            handoff.whatsapp_sent[str(sent[1]["message_id"])] = sent[0]
        if handoff.status not in only_from:
            return False
        handoff.status, handoff.updated_at = status, utcnow()
        return True

    _, moved = await services.customers.update(plan.customer_id, move)
    return moved
