"""Models more than one part of the API uses: the error body, a transcript's turn, the customer's place with the
desk, and how sure we are who the customer is."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from functions.api.fields import RequestBody, ResponseBody, Timestamp
from shared.models import EscalationStatus, Verification

AgentName = Annotated[str, Field(min_length=1, examples=["BillingAgent"], description=(
    "The scenario's name of an agent (CamelCase, e.g. `BillingAgent`, `UtilitiesConcierge`)."))]


class Error(ResponseBody):
    """Every 4xx and 5xx answer of the API: one sentence saying what went wrong."""

    error: str = Field(min_length=1, examples=["text: String should have at least 1 character"])
    sign_in: str = Field(None, description="On the desk's 401: where to sign in.")


class NoFields(RequestBody):
    """No body, or an empty JSON object."""


VerificationLevel = StrEnum("VerificationLevel", {level.name: level.value for level in Verification})
VerificationLevel.__doc__ = (
    "How sure we are who the session's customer is. `unverified`: nothing says (a new web chat). `identified`: we "
    "believe it, for one number (caller ID, a text message's sender), which can be spoofed, so no account data. "
    "`verified`: a second factor passed (a one-time code sent to the number on record, or the scenario's knowledge "
    "answers), or the channel authenticates its sender (WhatsApp). A session continued through a handoff link keeps "
    "the level it had. Account data needs `verified`."
)

EscalationState = StrEnum("EscalationState", {status.name: status.value for status in EscalationStatus})
EscalationState.__doc__ = "Where an escalation to the desk stands."


class TranscriptTurn(ResponseBody):
    role: Literal["customer", "agent"]
    text: str
    agent: str | None = Field(description="The agent who spoke, or who was active when the customer spoke.")
    at: Timestamp
    person: bool = Field(description="Written by a person at the desk (`agent` is their name).")


class EscalationView(ResponseBody):
    """Where the customer stands with the desk: the latest escalation asked from this session."""

    status: EscalationState
    agent_name: str | None = Field(description="The person who has (or had) them.")
    position: Annotated[int, Field(ge=1)] | None = Field(description="Their place while waiting.")


class OpenAPIDocument(ResponseBody):
    """This document: OpenAPI 3.1 (its own schema says the rest)."""

    model_config = {"extra": "allow"}

    openapi: str
    info: dict
    paths: dict
