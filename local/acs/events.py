"""Deliver events to the local Functions host the way Azure does.

Event Grid posts a JSON array to the Event Grid trigger's webhook with `aeg-event-type: Notification`; Call
Automation posts an array of CloudEvents to the callback URL given at answer time.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import aiohttp

EVENTGRID_WEBHOOK = "/runtime/webhooks/EventGrid"
ACS_TOPIC = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/Microsoft.Communication/communicationServices/emulator"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_grid_event(event_type: str, subject: str, data: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """One event in the Event Grid schema, as ACS publishes it."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "topic": ACS_TOPIC,
        "subject": subject,
        "eventType": event_type,
        "eventTime": now_iso(),
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": data,
    }


async def post_event_grid(
    session: aiohttp.ClientSession, functions_url: str, function_name: str, events: list[dict[str, Any]]
) -> int:
    """POST a batch to the Event Grid trigger `function_name`; returns the HTTP status (Event Grid retries non-2xx)."""
    url = f"{functions_url.rstrip('/')}{EVENTGRID_WEBHOOK}?functionName={function_name}"
    async with session.post(url, json=events, headers={"aeg-event-type": "Notification"}) as response:
        await response.read()
        return response.status


async def post_callbacks(
    session: aiohttp.ClientSession, callback_url: str, events: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> int:
    """POST Call Automation callback CloudEvents to the URL the app gave at answer time (`headers`: the JWT)."""
    async with session.post(callback_url, json=events, headers=headers) as response:
        await response.read()
        return response.status
