"""ACS call events as we receive them: the IncomingCall Event Grid event and the Call Automation callbacks.

The SDK has no parser for either (docs/protocols.md, "IncomingCall event" and "Call Automation callbacks"), so they are
read into small dataclasses: IncomingCall here, the callbacks by the models in functions/api/calls.py (which are also
their schema in /api/openapi.json). Anything that does not have the shape ACS sends raises InvalidInput naming the
field, before anything acts on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.errors import InvalidInput

INCOMING_CALL = "Microsoft.Communication.IncomingCall"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class IncomingCall:
    event_id: str
    correlation_id: str  # the call's id in every later event; our call id
    incoming_call_context: str  # what answer_call needs, valid while the call rings
    caller: str | None  # E.164 when the caller is a phone number that is not withheld
    callee: str | None
    server_call_id: str = ""


@dataclass(frozen=True)
class CallEvent:
    """One Call Automation callback, e.g. type "CallConnected" (the name without Microsoft.Communication.)."""

    event_id: str
    type: str
    call_connection_id: str
    correlation_id: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def detail(self) -> str:
        """What ACS says about the outcome: media streaming status details or the result message."""
        update = self.data.get("mediaStreamingUpdate") or {}
        result = self.data.get("resultInformation") or {}
        return str(update.get("mediaStreamingStatusDetails") or result.get("message") or "")


def parse_incoming_call(event_id: str, data: Any) -> IncomingCall:
    if not isinstance(data, dict):
        raise InvalidInput("IncomingCall data must be an object")
    context = _text(data, "incomingCallContext")
    correlation_id = _text(data, "correlationId")
    return IncomingCall(
        event_id=event_id,
        correlation_id=correlation_id,
        incoming_call_context=context,
        caller=phone_number(data.get("from")),
        callee=phone_number(data.get("to")),
        server_call_id=str(data.get("serverCallId") or ""),
    )


def phone_number(identifier: Any) -> str | None:
    """The E.164 number of a CommunicationIdentifierModel, or None for ACS users, Teams users and withheld numbers.

    `phoneNumber.value` is the documented field; the raw id (`4:+14255550123`) says the same and is always there.
    """
    if not isinstance(identifier, dict):
        return None
    phone = identifier.get("phoneNumber")
    value = phone.get("value") if isinstance(phone, dict) else None
    raw = identifier.get("rawId")
    if not value and isinstance(raw, str) and raw.startswith("4:"):
        value = raw[2:]
    return value if isinstance(value, str) and _E164.match(value) else None


def _text(body: dict[str, Any], key: str, where: str = "data") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}.{key} is missing or not a non-empty string")
    return value
