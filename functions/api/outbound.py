"""The bodies of the calls we place (shared/calls/outbound.py): whom to call and why, and how the call went.

The request names a scenario agent, so its model is made per scenario (`call_request`): the document lists the
agents the app accepts, and the app refuses the others with the same words. Exactly one of `customer_id` and `phone`
is a rule across fields, which JSON Schema says with `oneOf` and the model checks after its fields.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from functions.api.fields import RequestBody, ResponseBody, matching, message_text
from shared.calls.outbound import OPENING_CHARS

E164 = r"^\+[1-9][0-9]{6,14}$"
CONSENT_CHARS = 200
CUSTOMER_ID_CHARS = 200

Phone = matching(E164, "Input should be a number in international form, like +15551234567", 16)


class CallConsent(RequestBody):
    """When and where the person agreed to be called; the call's session keeps it."""

    given_at: message_text(CONSENT_CHARS, "When they agreed (an ISO time, say).")
    source: message_text(CONSENT_CHARS, "Where they agreed (a form, a call).")


@lru_cache(maxsize=4)
def call_request(agents: tuple[str, ...]) -> type[RequestBody]:
    """The body of `POST /api/calls` for a scenario whose agents are `agents`: checks and document alike."""
    Agent = Literal[agents]  # type: ignore[valid-type]

    class CallPurpose(RequestBody):
        agent: Agent = Field(description="A scenario agent: the call's session starts with it.")
        opening: message_text(OPENING_CHARS, "Said first, once a person picks up; `{name}`: their first name.")

    class CallRequest(RequestBody):
        """Whom to call (exactly one of customer_id and phone) and why."""

        model_config = {"json_schema_extra": {"oneOf": [{"required": ["customer_id"]}, {"required": ["phone"]}]}}

        customer_id: str = Field(None, min_length=1, max_length=CUSTOMER_ID_CHARS,
                                 description="A customer on record: we call the phone on their record.")
        phone: Phone = Field(None, description="E.164. A number on no record needs `consent`.")
        purpose: CallPurpose
        consent: CallConsent = Field(None, description="Needed to call a number on no record.")

        @model_validator(mode="after")
        def _one_callee(self) -> CallRequest:
            if (self.customer_id is None) == (self.phone is None):
                raise PydanticCustomError("one_callee", "must hold exactly one of customer_id and phone")
            return self

    return CallRequest


class PlacedCall(ResponseBody):
    call_id: str = Field(description="Ours (`out-...`): read how it went at /api/calls/placed/{call_id}.")
    customer_id: str
    session_id: str = Field(description="The call's voice session on the customer's record.")
    state: str = Field(description="`ringing`.")


class PlacedCallStatus(ResponseBody):
    """The call's state, and `outcome` (answered, voicemail, busy, no_answer, failed; null while it rings), with the
    status of its voice session."""

    call_id: str
    session_id: str | None
    state: str | None
    outcome: str | None
    session_status: str | None
