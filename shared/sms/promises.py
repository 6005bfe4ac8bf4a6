"""Texts an agent promised ("we'll text you when it's restored"), kept and sent once when the moment comes.

A tool's result names the promise (`ToolResult.promise`, "outage_restored:OUT-4471"); the conversation core saves it
on the customer record inside the turn's own write, and `promised` indexes the customer under the promise in the
session state, so the customers to text can be found when the outage is over without scanning every record.

`fulfil` sends each indexed customer the text once:
* the record is the truth: a promise marked sent is never sent again, so a second trigger sends nothing;
* the text's repeatability id is derived from the customer and the promise, so two triggers racing (or a retry after
  a crash between the send and the record write) are recognised by ACS and reach the phone once;
* a customer who opted out of texts, or has no number to text, is marked as such and skipped.
The index is a lookup aid that expires after INDEX_TTL_SECONDS; losing it (a state store wiped) loses the send, not
the promise on the record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from shared.errors import NotFound, SwitchboardError
from shared.messenger.base import SendFailed
from shared.models import Customer, utcnow

if TYPE_CHECKING:
    from shared.scenario import Scenario
    from shared.sms.outbox import SmsOutbox
    from shared.stores.base import CustomerStore, SessionState

log = logging.getLogger(__name__)

_INDEX = "promises:"  # + kind:ref -> the ids of the customers promised a text about it
_HAPPENED = "promises:happened"  # kind:ref of each promise whose moment came (an outage restored)
#: How long a promise stays findable: an outage lasting longer than a week is handled by people, not this.
INDEX_TTL_SECONDS = 7 * 24 * 3600


@dataclass
class Fulfilled:
    """What one trigger did, for the operator who sent it."""

    sent: int = 0
    already_sent: int = 0
    not_sent: dict[str, int] = field(default_factory=dict)  # reason -> customers

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "already_sent": self.already_sent, "not_sent": dict(self.not_sent)}


async def promised(state: SessionState, kind: str, ref: str, customer_id: str) -> None:
    """Index a promise the record now holds. Best effort: the promise stays on the record either way. Its
    orchestration (shared/notifications.py) is started by the channel after the reply (`TurnOutcome.promised`), not
    here: nothing in the turn waits on it."""
    try:
        await state.add_member(f"{_INDEX}{kind}:{ref}", customer_id, INDEX_TTL_SECONDS)
    except SwitchboardError as exc:
        log.error("a promised text (%s %s) is on the record but not indexed: %s", kind, ref, exc)


async def happened(state: SessionState) -> frozenset[str]:
    """The promises whose moment came ("outage_restored:OUT-4471"), for the tools to read (ScenarioData.happened):
    a customer asking after the outage is over hears that it is, not its old ETA. Best effort: without the state
    store the tools read the scenario's data as shipped."""
    try:
        return frozenset(await state.members(_HAPPENED))
    except SwitchboardError as exc:
        log.warning("cannot read what has happened since the scenario's data (%s); the tools read it as shipped", exc)
        return frozenset()


async def fulfil(customers: CustomerStore, state: SessionState, sms: SmsOutbox, kind: str, ref: str,
                 text_for: Callable[[Customer], str]) -> Fulfilled:
    """Send the promised text to every customer indexed under kind:ref, once each. `text_for(customer)` is the
    text. The moment is recorded first (`happened`), so from then on the agents say it happened and promise nothing
    more about it. Raises Unavailable if a store or ACS stays out past the retries; a re-run finishes the job."""
    await state.add_member(_HAPPENED, f"{kind}:{ref}", INDEX_TTL_SECONDS)
    done = Fulfilled()
    for customer_id in sorted(await state.members(f"{_INDEX}{kind}:{ref}")):
        outcome = await _fulfil_one(customers, sms, customer_id, kind, ref, text_for)
        if outcome == "sent":
            done.sent += 1
        elif outcome == "already_sent":
            done.already_sent += 1
        else:
            done.not_sent[outcome] = done.not_sent.get(outcome, 0) + 1
    return done


async def _fulfil_one(customers: CustomerStore, sms: SmsOutbox, customer_id: str, kind: str, ref: str,
                      text_for: Callable[[Customer], str]) -> str:
    from shared.router import phone_of
    from shared.sms.outbox import send_key

    customer = await customers.get(customer_id)
    promise = customer.promise(kind, ref)
    if promise is None:
        return "no promise on the record"
    if promise.get("sent_at"):
        return "already_sent"
    if promise.get("error"):
        return promise["error"]
    phone = phone_of(customer)
    if phone is None:
        return await _settle(customers, customer_id, kind, ref, None, "no phone number to text")
    try:
        message_id = await sms.text(phone, text_for(customer), key=send_key(customer_id, kind, ref, promise["at"]),
                                    first_sent=datetime.fromisoformat(promise["at"]), tag=kind)
    except SendFailed as exc:
        log.warning("promised text %s %s to customer %s not sent: %s", kind, ref, customer_id, exc)
        return await _settle(customers, customer_id, kind, ref, None, "opted out" if exc.code == "OptedOut"
                             else f"refused: {exc.code or exc}")
    return await _settle(customers, customer_id, kind, ref, message_id, None)


async def _settle(customers: CustomerStore, customer_id: str, kind: str, ref: str, message_id: str | None,
                  error: str | None) -> str:
    def record(customer: Customer) -> str:
        promise = customer.promise(kind, ref)
        if promise is None:
            return "no promise on the record"
        if promise.get("sent_at"):
            return "already_sent"  # a concurrent trigger recorded the same send (ACS took it once)
        if error:
            promise["error"] = error
            return error
        promise["sent_at"], promise["message_id"] = utcnow(), message_id
        return "sent"

    _, outcome = await customers.update(customer_id, record)
    return outcome


async def outage_restored(scenario: Scenario, customers: CustomerStore, state: SessionState, outbox: SmsOutbox,
                          outage_id: str) -> Fulfilled:
    """The outage is over: text everyone the outage agent promised ("we'll text you when it's restored"), once.
    NotFound for an outage the scenario's data does not list."""
    from shared.sms.outbox import sms_phrase

    outage = next((o for o in scenario.data.get("outages", []) if str(o.get("id")) == outage_id), None)
    if outage is None:
        raise NotFound(f"no outage {outage_id!r} in the scenario's data")

    def text_for(customer: Customer) -> str:
        address = customer.collected.get("service_address") or str(outage.get("area") or "your address")
        return sms_phrase(scenario, "sms_outage_restored", address=address, outage=outage_id)

    done = await fulfil(customers, state, outbox, "outage_restored", outage_id, text_for)
    log.info("outage %s restored: %s", outage_id, done.to_dict())
    return done
