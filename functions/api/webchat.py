"""The web chat's bodies: starting a session, a customer's message, the replies and the transcript."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field

from functions.api.common import AgentName, EscalationView, TranscriptTurn, VerificationLevel
from functions.api.fields import MAX_COUNTER, NonEmpty, Query, RequestBody, ResponseBody, message_text, query_int, \
    query_seconds
from shared.desk import MAX_POLL_SECONDS


class CreateSessionRequest(RequestBody):
    """Optional. An empty body or `{}` starts a new conversation."""

    handoff_token: NonEmpty = Field(
        None, description="Continue a conversation handed over from another channel (voice, WhatsApp).")


@lru_cache(maxsize=4)
def send_message_request(max_chars: int) -> type[RequestBody]:
    """The message body for a limit of `max_chars` (WEBCHAT_MAX_MESSAGE_CHARS): checks and document alike."""

    class SendMessageRequest(RequestBody):
        text: message_text(max_chars, "What the customer typed; must hold something other than whitespace.")

    return SendMessageRequest


class Reply(ResponseBody):
    """One message from an agent."""

    text: str
    agent: AgentName


class SessionCreated(ResponseBody):
    session_id: str = Field(min_length=1, description="Opaque id of a web chat session.")
    token: str = Field(min_length=1, description=(
        "Bearer token for this session's other routes; it expires (WEBCHAT_TOKEN_TTL_SECONDS)."))
    agent: AgentName
    replies: list[Reply] = Field(description="The greeting.")


class MessageReplies(ResponseBody):
    replies: list[Reply] = Field(description=(
        "What the agents said, in order (several when a handoff happened during the turn)."))
    agent: AgentName = Field(description="The agent active after this turn.")
    escalation: EscalationView | None = Field(description=(
        "Where the customer stands with the desk after this turn; null if they never asked for a person here."))


class Transcript(ResponseBody):
    session_id: str = Field(min_length=1)
    agent: AgentName = Field(description="The agent active now.")
    status: Literal["active", "transferred", "completed", "expired"] = Field(description=(
        "`transferred`: the conversation continues on another channel."))
    turns: list[TranscriptTurn] = Field(description="The session's most recent turns, oldest first.")
    escalation: EscalationView | None = Field(description=(
        "Where the customer stands with the desk; null if they never asked for a person here."))
    verification: VerificationLevel


class TranscriptPoll(Query):
    """The chat page's long poll on a session."""

    after: query_int(0, MAX_COUNTER, (
        "The number of turns the page has: with `wait`, the answer waits for more (a person writing).")) = None
    wait: query_seconds(MAX_POLL_SECONDS, (
        "Seconds to hold the poll for new turns or a change in the customer's place (default 0).")) = 0.0


class ClosedSession(ResponseBody):
    """The session after the customer closed it: closing again answers the same."""

    session_id: str = Field(min_length=1)
    status: Literal["completed", "transferred", "expired"] = Field(description=(
        "`completed`; a session that had already ended elsewhere keeps how it ended."))
