"""The notifications' bodies: what starting a customer's promised notifications did (functions/notifications.py).
The request takes no fields: the start token says whose promises to start (common.NoFields)."""

from __future__ import annotations

from pydantic import Field

from functions.api.fields import ResponseBody


class NotificationsStarted(ResponseBody):
    started: list[str] = Field(description=(
        "The ids of the customer's promised notifications still to keep, each with its orchestration now running "
        "(started by this request or an earlier one: starting again starts nothing twice)."))
