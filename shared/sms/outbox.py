"""Every text we send outside a reply (codes, web chat links, promised notifications) goes through `SmsOutbox.text`,
which refuses a number that opted out (STOP) before anything reaches ACS. Kept apart from the conversation service so
the verifier, the handoff and the promises can send without a conversation to hand.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from shared.messenger.base import SendFailed
from shared.models import Identity, IdentityKind
from shared.scenario import Scenario
from shared.sms.sender import SmsSender
from shared.stores.base import CustomerStore

_KEYS = uuid.UUID("0b7c4f0e-6c55-4d3a-9a57-1d2f6e8b9c31")  # namespace of the repeatability ids of our texts
#: What we text, unless the scenario's phrases say it their way (same keys).
SMS_PHRASES = {
    "sms_help": "{company}: text us your question and our assistant will answer. Reply STOP to stop texts, START "
                "to get them again. Msg & data rates may apply.",
    "sms_code": "{code} is your {company} verification code. It expires in {minutes} minutes. Never share it.",
    "sms_link": "{company}: continue our conversation in your browser: {link}",
    "sms_link_reminder": "{company} again: we're still ready to pick up where we left off: {link}",
    "sms_outage_restored": "{company}: power is back on at {address}. Thanks for your patience. Reply STOP to opt "
                           "out.",
}


class OptedOut(SendFailed):
    """The number texted STOP: nothing goes to it by SMS until it texts START."""

    def __init__(self) -> None:
        super().__init__("the customer opted out of texts (STOP)", code="OptedOut")


def send_key(*parts: str) -> str:
    """The repeatability id of a text: the same parts always give the same UUID, so a repeat is recognised."""
    return str(uuid.uuid5(_KEYS, ":".join(parts)))


def sms_phrase(scenario: Scenario, key: str, **values: object) -> str:
    return scenario.phrases.get(key, SMS_PHRASES[key]).format(company=scenario.company, **values)


class SmsOutbox:
    def __init__(self, customers: CustomerStore, sender: SmsSender) -> None:
        self.customers = customers
        self.sender = sender

    @property
    def configured(self) -> bool:
        return self.sender.configured

    async def text(self, phone: str, text: str, *, key: str, first_sent: datetime, tag: str) -> str:
        """Send one text we owe the holder of `phone`, unless they opted out (OptedOut). `key` is its repeatability
        id: the same key is the same text, sent once. Returns the message id; raises SendFailed or Unavailable."""
        holder = await self.customers.find_by_identity(Identity(IdentityKind.PHONE, phone))
        if holder is not None and holder.sms_opt_out:
            raise OptedOut()
        return await self.sender.send(phone, text, repeatability_id=key, first_sent=first_sent, tag=tag)
