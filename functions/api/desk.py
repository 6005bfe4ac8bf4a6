"""The desk's bodies: the person signed in, the queue, a customer's whole context, and what a person sends.

The desk's own lists (the queue, the context) are built in shared/desk.py; these models say what they hold, and the
live tests and schemathesis hold the app to them. Every object is closed but the supervisor's figures, a map of
numbers the desk may grow.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, RootModel

from functions.api.common import EscalationState, TranscriptTurn, VerificationLevel
from functions.api.fields import MAX_COUNTER, Query, RequestBody, ResponseBody, Timestamp, matching, message_text, \
    query_int, query_seconds
from shared.desk import MAX_POLL_SECONDS

DISPOSITIONS = ("resolved", "follow_up", "callback", "not_resolved")
MAX_NOTE_CHARS = 2000
MAX_ACS_USER_CHARS = 256
E164_OR_EMPTY = r"^(\+[1-9][0-9]{6,14})?$"
ACS_USER_OR_EMPTY = r"^(8:[\x21-\x7e]+)?$"  # an ACS communication identifier, e.g. 8:acs:<resource>_<id>

Count = Annotated[int, Field(ge=0)]
Phone = matching(E164_OR_EMPTY, 'Input should be a number in international form, like +15551234567 ("" clears it)', 16)
AcsUser = matching(ACS_USER_OR_EMPTY, 'Input should be an ACS user id, like 8:acs:... ("" clears it)',
                   MAX_ACS_USER_CHARS)
Note = Annotated[str, Field(max_length=MAX_NOTE_CHARS)]


# The person --------------------------------------------------------------------------------------------------------


class DeskAgent(ResponseBody):
    """The person signed in, as the sign-in says."""

    agent_id: str = Field(description="Their Entra object id (locally `dev-<name>`).")
    name: str
    supervisor: bool = Field(description="Holds the desk.supervisor role.")


class Presence(ResponseBody):
    """Whether a person is taking customers, and where transferred calls ring for them."""

    agent_id: str
    name: str
    status: Literal["available", "away"] = Field(description="`away` too when their page has not polled for a while.")
    phone: str = Field(description="E.164, or empty.")
    acs_user: str = Field(description="An ACS user id, or empty.")
    claims: Count = Field(description="Customers they have now.")


class DeskMe(ResponseBody):
    agent: DeskAgent
    presence: Presence
    sign_in: str = Field(description="Where to sign in again (the platform's sign-in).")
    sign_out: str = Field(description="Where to sign out.")


class PresenceUpdate(RequestBody):
    status: Literal["available", "away"]
    phone: Phone = Field(None, description="Where transferred calls ring for this person (E.164); empty clears it.")
    acs_user: AcsUser = Field(None, description=(
        "Or an ACS user id (8:acs:...) calls are put through to; empty clears it."))


# The queue ---------------------------------------------------------------------------------------------------------


class HeldEntry(ResponseBody):
    """A customer the person has now (the queue's copy; the record holds the truth)."""

    escalation_id: str = None
    customer_id: str = None
    session_id: str = None
    channel: str = None
    reason: str = None
    summary: str = None
    customer_name: str = None
    created_at: float = None
    status: EscalationState
    agent_id: str | None = None
    agent_name: str | None = None


class WaitingEntry(ResponseBody):
    """A customer waiting for a person, as the queue shows them."""

    escalation_id: str
    customer_id: str
    session_id: str
    channel: str = Field(description="webchat, whatsapp, voice, ...")
    reason: str = Field(description="Why a person is needed, in words a person reads.")
    summary: str = Field(description="What the AI did so far, in a line or two.")
    customer_name: str = Field(description="Empty when the customer did not say.")
    created_at: float = Field(description="When they asked (seconds since the epoch).")
    status: EscalationState
    agent_id: str | None = None
    agent_name: str | None = None
    position: int = Field(ge=1, description="1 = next.")
    waiting_seconds: float = Field(ge=0)


class DeskMetrics(RootModel[dict[str, float | None]]):
    """The supervisor's figures, each a number or null (no data yet): the queue now (`waiting`, `calls_on_hold`,
    `longest_wait_seconds`, `agents_available`, `agents_free`, `estimated_wait_seconds`), the last hour
    (`escalations_last_hour`, `claimed_last_hour`, `abandoned_last_hour`, `abandonment_rate`,
    `average_handle_seconds`, `handle_seconds_in_use`), the last day's handoffs (`handoffs_started_last_day`,
    `handoffs_engaged_last_day`, `handoff_success_rate`, `switch_seconds_median`) and `at` (when, in seconds since the
    epoch). docs/desk.md says what each means."""


class DeskQueue(ResponseBody):
    version: Count = Field(description="Send it back as `since` to wait for the next change.")
    waiting: list[WaitingEntry] = Field(description="Longest waiting first.")
    mine: list[HeldEntry]
    presence: Presence
    metrics: DeskMetrics = Field(None, description="Supervisors only.")


class QueuePoll(Query):
    since: query_int(0, MAX_COUNTER, "The `version` of the last answer.") = None
    wait: query_seconds(MAX_POLL_SECONDS, "Seconds to hold the poll for a change (default 0).") = 0.0


# One customer ------------------------------------------------------------------------------------------------------


class Escalation(ResponseBody):
    """A customer handed to the desk, as their record remembers it."""

    escalation_id: str
    session_id: str
    channel: str
    reason: str
    summary: str
    status: EscalationState
    created_at: Timestamp
    updated_at: Timestamp
    agent_id: str | None
    agent_name: str | None
    claimed_at: str | None
    ended_at: str | None
    disposition: str | None = Field(description="How a person closed it.")
    note: str | None = Field(description="The person's note for the record.")
    callback: str | None = Field(description="The number a callback was asked on.")


class EscalationResult(ResponseBody):
    escalation: Escalation


class FollowUp(ResponseBody):
    kind: str
    ref: str
    text: str
    sent: bool


class Synthesis(ResponseBody):
    """What an ended conversation came to, written on the record once when it ended."""

    session_id: str = Field(description="The session that ended (one synthesis each).")
    channel: str
    ended_by: Literal["hung_up", "closed", "handoff_expired", "desk_disposition"]
    summary: str
    goal: str = Field(description="What the customer wanted.")
    goal_met: bool
    sentiment: Literal["positive", "neutral", "negative"]
    next_action: str | None = Field(description="What we still have to do, if anything.")
    due: str | None = Field(description="When the next action is due, as it was said.")
    follow_ups: list[FollowUp] = Field(description="Texts we promised the customer.")
    intent: str | None
    escalation_id: str | None
    disposition: str | None
    written_by: str = Field(description="rules, or the policy whose model wrote it (openai).")
    at: Timestamp


class Promised(ResponseBody):
    """A notification we promised the customer ("we'll text you when it's restored") and whether it went."""

    id: str = Field(description="The notification's id (one per customer and promise).")
    kind: str = Field(description="What was promised: `outage_restored`, `service_follow_up`, ...")
    ref: str = Field(description="What it is about (an outage id; a visit and its due time).")
    promised_at: str | None
    due: str | None = Field(description="When it is due, for a promise made for a time; null: when its moment comes.")
    kept: bool
    kept_at: str | None
    channel: str | None = Field(description="How it went: whatsapp, whatsapp_template, sms, call.")
    error: str | None = Field(description="Why it cannot go (`opted out`, `expired: ...`).")


class OpenCallback(ResponseBody):
    """The callback the customer asked for and we still owe them."""

    callback_id: str
    state: Literal["requested", "calling"]
    when: Literal["turn", "at"] = Field(description="`turn`: when the queue clears; `at`: at the time `at`.")
    at: str | None
    number: str = Field(description="The number we will call (the one on record).")
    topic: str = Field(description="What they were doing when they asked, as the call's opening says it.")
    requested_at: str | None
    channel: str | None = Field(description="Where they asked.")
    attempts: int = Field(ge=0, description="Calls placed for it so far.")


class CustomerSyntheses(ResponseBody):
    """How each of a customer's ended conversations ended (GET /api/customers/{customer_id}/syntheses)."""

    customer_id: str
    syntheses: list[Synthesis] = Field(description="Oldest first, one per ended session.")


class DeskSession(ResponseBody):
    """One of the customer's sessions, on any channel, with its transcript."""

    session_id: str
    channel: str
    status: str
    started_at: Timestamp
    verification: VerificationLevel
    turns: list[TranscriptTurn]


class DeskAuditEntry(ResponseBody):
    """What was disclosed, or what happened in a verification, to whom, where and when."""

    at: Timestamp
    event: str = Field(description="`disclosed` (a tool showed account data), a verification step: "
                       "`verification_requested`, `_wrong`, `_verified`, `_locked`, `_expired`; or what was done "
                       "for the customer: `call_placed`, `callback_requested`, `callback_cancelled`.")
    channel: str
    session_id: str
    tool: str | None = Field(description="The tool that showed the data, or asked for it.")
    method: str | None = Field(description="`code` or `knowledge`, for verification steps.")
    refused: str | None = Field(description="Why no code went (`locked`, `unavailable`, `too_many`), when none did.")
    level: VerificationLevel | None = Field(description="The session's level after a verification step or a "
                                           "disclosure; null for the other events.")
    who: str | None = Field(description="The last four digits of the number the session stood for (`…0100`); null "
                            "for a visitor nobody knew.")
    shown_by: str | None = Field(description="How the session showed it: `voice sender` (caller ID), "
                                 "`whatsapp sender`, `code`, `knowledge`, `handoff`.")


class DeskCustomer(ResponseBody):
    customer_id: str
    collected: dict[str, str] = Field(description="What the customer told us (account number, address, ...).")
    identities: list[str] = Field(description="phone, webchat, ...")


class DeskContext(ResponseBody):
    """Everything a person needs to help without asking the customer again."""

    escalation: Escalation
    customer: DeskCustomer
    summary: str = Field(description="The AI's summary of the customer's conversations.")
    sessions: list[DeskSession] = Field(description="Oldest first.")
    history: list[Escalation] = Field(description="The customer's other escalations: earlier dispositions and notes.")
    syntheses: list[Synthesis] = Field(description=(
        "How each of the customer's ended conversations ended, oldest first."))
    promised: list[Promised] = Field(description="Notifications we promised the customer, oldest first.")
    callback: OpenCallback | None = Field(description="The callback we owe them, if they asked for one.")
    audit: list[DeskAuditEntry] = Field(description=(
        "Each verification step and each disclosure of account data on the customer's record, oldest first (the "
        "latest 200). Codes and answers are never on the record."))


# What a person sends -----------------------------------------------------------------------------------------------


class ClaimRequest(RequestBody):
    """Empty: a claim takes no fields."""


@lru_cache(maxsize=4)
def desk_message_request(max_chars: int) -> type[RequestBody]:
    """A person's message to the customer: the customer's own limit (WEBCHAT_MAX_MESSAGE_CHARS)."""

    class DeskMessageRequest(RequestBody):
        text: message_text(max_chars, "What the person writes to the customer.")

    return DeskMessageRequest


class DeskMessageSaid(ResponseBody):
    turn: TranscriptTurn = Field(description="The message as the customer sees it.")


class HandBackRequest(RequestBody):
    """Optional: an empty body hands back without a note."""

    note: Note = Field("", description="For the record (the customer does not see it).")


class CloseRequest(RequestBody):
    disposition: Literal[DISPOSITIONS]
    note: Note = Field("", description="For the record.")
