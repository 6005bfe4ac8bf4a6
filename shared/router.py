"""The channel router: should this customer be offered to continue on another channel, and on which?

A switch is offered when the scenario's thresholds say the wait for a person is bad (the estimated wait over its
threshold, the number waiting over its threshold, or a declared mass incident over its size), never on figures that
could not be read. With nobody on duty the estimate is unknown, and only the other two can make the offer.

The channels offered
are the scenario's alternates this customer can take: WhatsApp needs a phone number on record (we treat any number
the customer called from or gave us as WhatsApp-capable; a landline simply never engages and the handoff expires),
web chat always works.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.models import Customer, IdentityKind
from shared.queue import QueueSnapshot
from shared.scenario import Omnichannel


@dataclass(frozen=True)
class SwitchDecision:
    offer: bool
    channels: tuple[str, ...] = ()  # what the customer may switch to, best first
    reasons: tuple[str, ...] = field(default=())  # why, in words an operator can read

    def to_dict(self) -> dict:
        return {"offer": self.offer, "channels": list(self.channels), "reasons": list(self.reasons)}


def available_channels(omni: Omnichannel, customer: Customer | None, current: str) -> tuple[str, ...]:
    """The scenario's alternate channels this customer can use, excluding the one they are on."""
    channels = []
    for channel in omni.alternate_channels:
        if channel == current:
            continue
        if channel == "whatsapp" and phone_of(customer) is None:
            continue
        channels.append(channel)
    return tuple(channels)


def phone_of(customer: Customer | None) -> str | None:
    if customer is None:
        return None
    for identity in customer.identities:
        if identity.kind is IdentityKind.PHONE:
            return identity.value
    # A number they gave to be reached on (contact_number: it names no account) before the account's.
    for slot in ("contact_number", "phone_number"):
        if (number := customer.collected.get(slot)) and number.startswith("+"):
            return number
    return None


def decide(omni: Omnichannel, queue: QueueSnapshot, customer: Customer | None, current: str) -> SwitchDecision:
    channels = available_channels(omni, customer, current)
    if not queue.known or not channels:
        return SwitchDecision(False, channels)
    reasons = []
    if queue.estimated_wait_seconds is not None and queue.estimated_wait_seconds > omni.queue_wait_threshold_seconds:
        reasons.append(f"estimated wait {queue.estimated_wait_seconds:.0f} s is over {omni.queue_wait_threshold_seconds:.0f} s")
    if queue.waiting is not None and queue.waiting > omni.queue_depth_threshold:
        reasons.append(f"{queue.waiting} customers waiting for a person is over {omni.queue_depth_threshold}")
    if queue.incident_customers is not None and queue.incident_customers > omni.mass_outage_threshold:
        reasons.append(f"an incident affecting {queue.incident_customers} customers is over {omni.mass_outage_threshold}")
    return SwitchDecision(bool(reasons), channels, tuple(reasons))
