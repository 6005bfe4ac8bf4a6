"""The channel handoff's bodies: the media gateway starting one, and its status."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from functions.api.fields import NonEmpty, RequestBody, ResponseBody


class HandoffRequest(RequestBody):
    """Start moving a session's customer to another channel (the media gateway's way in)."""

    customer_id: NonEmpty
    session_id: NonEmpty
    to_channel: Literal["whatsapp", "webchat"]


class HandoffStarted(ResponseBody):
    id: str
    status_url: str


class HandoffStatus(ResponseBody):
    """The orchestration's runtime status and the step it is on (summarising ... waiting, engaged)."""

    id: str
    runtime_status: str
    step: str | None
    to_channel: str | None = None
    invite: dict[str, Any] | None = Field(None, description=(
        "What the invitation step sent: whether, which template, and `link_sent` for web chat (the link itself goes "
        "only to the customer)."))
    output: dict[str, Any] | None = None
    created_time: str | None = None
    last_updated_time: str | None = None
