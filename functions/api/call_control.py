"""The media gateway's call control (functions/calls.py): what it may send to end or transfer the call it carries,
and what the app answers, as models the routes check requests with and /api/openapi.json is generated from.

`CallStatus` is a call's record as the call service keeps it (shared/calls/service.py, and shared/calls/outbound.py
for the calls we place): every field the record can hold is listed here, so the document promises what is sent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from functions.api.fields import RequestBody, ResponseBody, Timestamp, message_text
from shared.calls.service import ABANDONED, VOICEMAIL

#: The longest escalation id a transfer request may name (ours are far shorter).
ESCALATION_ID_CHARS = 100

#: How a hung-up call is recorded: the caller stayed silent (abandoned), or an answering machine took an outbound call.
HangUpOutcome = Literal[ABANDONED, VOICEMAIL]  # type: ignore[valid-type]


class HangUpRequest(RequestBody):
    """No body (or `{}`): the conversation is over. `outcome` says how the call ended, for its record."""

    outcome: HangUpOutcome = Field(None, description=(
        f"`{ABANDONED}`: the caller said nothing through the gateway's reprompt and goodbye (the call's state then "
        f"reads `{ABANDONED}`). `{VOICEMAIL}`: an answering machine took the call we placed, and the gateway left "
        "a message."))


class TransferRequest(RequestBody):
    """No body (or `{}`): to the scenario's escalation number. `escalation_id`: to the person the desk routed that
    escalation of this caller to."""

    escalation_id: message_text(ESCALATION_ID_CHARS, "The escalation the caller is put through for.") = None


class CallAction(ResponseBody):
    """The request was passed to Call Automation; its outcome arrives as callbacks."""

    call_id: str
    action: Literal["hangup", "transfer"]
    target: str = Field(None, description="Where the call is being transferred: a phone number or an ACS user id.")
    escalation_id: str = Field(None, description="The escalation the caller is put through for.")
    outcome: HangUpOutcome = Field(None, description="How the hung-up call is recorded.")


class CallStatus(ResponseBody):
    """What the app knows of a call (from its callbacks, and for a call we placed, from placing it), and its voice
    session's status."""

    call_id: str = Field(description="The call's correlation id (ours, `out-...`, for a call we placed).")
    session_id: str
    state: Literal["dialing", "ringing", "answering", "connected", "ended", "transferred", "failed",
                   "abandoned"] = Field(None, description="`dialing` and `ringing`: a call we placed.")
    connection_id: str = Field(None, description="The Call Automation call connection id, once connected.")
    correlation_id: str = Field(None, description="Call Automation's id of a call we placed.")
    direction: Literal["outbound"] = Field(None, description="Present on a call we placed.")
    agent: str = Field(None, description="The scenario agent a call we placed started with.")
    outcome: Literal["answered", "voicemail", "busy", "no_answer", "failed"] = Field(None, description=(
        "How a call we placed went; absent while it rings, and for a call we answered."))
    media: Literal["streaming", "stopped", "failed"] = None
    media_detail: str = None
    transfer: Literal["requested", "failed"] = None
    transfer_to: str = None
    transfer_detail: str = None
    escalation_id: str = Field(None, description="The escalation the call was put through to a person for.")
    ended_at: Timestamp = Field(None, description="When the call was disconnected.")
    transferred_at: Timestamp = Field(None, description="When the transfer to a person was accepted.")
    failed_at: Timestamp = Field(None, description="When answering, placing or connecting failed.")
    failed_detail: str = Field(None, description="Why placing the call failed.")
    abandoned_at: Timestamp = Field(None, description=(
        "When the gateway hung up on a caller who said nothing (outcome abandoned)."))
    voicemail_at: Timestamp = Field(None, description="When the gateway hung up after leaving a voicemail.")
    busy_at: Timestamp = Field(None, description="When a call we placed found the line busy.")
    no_answer_at: Timestamp = Field(None, description="When a call we placed rang out unanswered.")
    updated_at: Timestamp
    session_status: Literal["active", "transferred", "completed", "expired"] | None = Field(description=(
        "The voice session's status on the customer record; null if it cannot be found."))


def call_status(record: dict[str, Any]) -> CallStatus:
    """The call service's description of a call (`CallService.describe`) as its answer: a field it left empty is
    left out (required ones excepted), and one this model does not list is not sent."""
    required = {name for name, field in CallStatus.model_fields.items() if field.is_required()}
    return CallStatus(**{name: value for name, value in record.items()
                         if name in CallStatus.model_fields and (value is not None or name in required)})
