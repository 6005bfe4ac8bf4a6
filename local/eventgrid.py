"""Event Grid payloads as the host receives them: a batch within the service's limits, the subscription-validation
handshake, and each event (Event Grid schema or CloudEvents 1.0) checked, then decoded as the worker would.
"""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum

MAX_EVENTGRID_BYTES = 1024 * 1024  # Event Grid never delivers a batch larger than 1 MB ...
MAX_EVENTGRID_EVENTS = 5000  # ... or with more than 5,000 events
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"


class BadRequest(Exception):
    """The caller sent something we cannot use; `status` and the message go back as JSON."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """The JSON array (or single object) Event Grid posts, size-checked."""
    if len(body) > MAX_EVENTGRID_BYTES:
        raise BadRequest(f"Event Grid batches are at most {MAX_EVENTGRID_BYTES} bytes", 413)
    try:
        payload = json.loads(body)
    except ValueError:
        raise BadRequest("body is not valid JSON") from None
    except RecursionError:  # deeply nested arrays fit in a batch's size and overflow Python's stack
        raise BadRequest("body is nested too deeply") from None
    items = [payload] if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise BadRequest("body must be a JSON array of event objects, or one event object")
    if not items:
        raise BadRequest("body holds no events")
    if len(items) > MAX_EVENTGRID_EVENTS:
        raise BadRequest(f"Event Grid batches hold at most {MAX_EVENTGRID_EVENTS} events, got {len(items)}", 413)
    return items


def validation_code(items: list[dict[str, Any]]) -> str:
    """The code to echo in the subscription-validation handshake
    (docs/protocols.md, "Event Grid subscription validation")."""
    event = items[0]
    data = event.get("data")
    if event.get("eventType") != VALIDATION_EVENT or not isinstance(data, dict):
        raise BadRequest(f"a SubscriptionValidation request carries one {VALIDATION_EVENT}")
    code = data.get("validationCode")
    if not isinstance(code, str) or not code:
        raise BadRequest("the validation event has no data.validationCode")
    return code


def to_trigger_event(index: int, item: dict[str, Any]) -> func.EventGridEvent | func.CloudEvent:
    """Check one event's required fields, then decode it with the worker's own converter.

    Using the SDK converter means the function gets exactly what it would get in Azure: a CloudEvent when
    `specversion` is present, else an EventGridEvent.
    """
    if "specversion" in item:
        required, time_key = ("specversion", "id", "source", "type"), "time"
    else:
        required, time_key = ("id", "eventType", "eventTime"), "eventTime"
        if not isinstance(item.get("subject"), str):  # may be empty, as in the validation event
            raise BadRequest(f"event {index}: subject is missing or not a string")
    for key in required:
        if not isinstance(item.get(key), str) or not item[key]:
            raise BadRequest(f"event {index}: {key} is missing or not a non-empty string")
    if item.get("specversion", "1.0") != "1.0":
        raise BadRequest(f"event {index}: specversion must be 1.0, not {item['specversion']!r}")
    if item.get(time_key) is not None:
        try:
            EventGridEventInConverter._parse_datetime(item[time_key])
        except (ValueError, TypeError):
            raise BadRequest(f"event {index}: {time_key} is not an ISO 8601 time: {item[time_key]!r}") from None
    return EventGridEventInConverter.decode(Datum(json.dumps(item), "json"), trigger_metadata={})
