"""Call Automation's callbacks (docs/protocols.md, "Call Automation callbacks"): the CloudEvents ACS posts to a call's
callback URL. These models check every batch the callback route reads and are its schema in /api/openapi.json.

ACS shapes these events, so they stay open: attributes and data fields the app does not read are accepted and
ignored, and so is any `Microsoft.Communication.*` type the app does not act on (CallService passes over it). What
the app reads must be there, and be text: the event's id and type, and the call's two ids in its data.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, ValidationError
from pydantic_core import PydanticCustomError

from functions.api.fields import NOT_BLANK_PATTERN, Schema
from functions.api.schemas import inline_schema
from shared.calls.events import CallEvent
from shared.errors import InvalidInput

#: Largest callback batch we read; ACS sends a handful of small events at a time.
MAX_CALLBACK_BYTES = 256 * 1024
CALL_AUTOMATION_PREFIX = "Microsoft.Communication."
#: pydantic's words for "not an object" name the model class, which means nothing to ACS's operators.
_NOT_AN_OBJECT = {"model_type", "model_attributes_type", "dict_type"}


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank", "String should hold something other than whitespace")
    return text


def _call_automation(event_type: str) -> str:
    if not event_type.startswith(CALL_AUTOMATION_PREFIX) or event_type == CALL_AUTOMATION_PREFIX:
        raise PydanticCustomError("not_call_automation", "{type} is not a Call Automation event (Microsoft."
                                  "Communication.<Name>)", {"type": repr(event_type)})
    return event_type


NotBlank = Annotated[str, Field(min_length=1), AfterValidator(_not_blank), Schema({"pattern": NOT_BLANK_PATTERN})]
EventType = Annotated[str, AfterValidator(_call_automation),
                      Schema({"pattern": "^" + CALL_AUTOMATION_PREFIX.replace(".", r"\.") + "."})]


class CallEventData(BaseModel):
    """The event's data; the app reads these fields (and `resultInformation` and `mediaStreamingUpdate` where
    present)."""

    model_config = ConfigDict(strict=True)

    call_connection_id: NotBlank = Field(alias="callConnectionId")
    correlation_id: NotBlank = Field(alias="correlationId")


class CallbackEvent(BaseModel):
    """One CloudEvent 1.0 from Call Automation."""

    model_config = ConfigDict(strict=True)

    id: NotBlank
    source: str = Field(None)
    specversion: str = Field(None)
    type: EventType
    subject: str = Field(None)
    time: str = Field(None)
    datacontenttype: str = Field(None)
    data: CallEventData


class CallEvents(RootModel[list[CallbackEvent]]):
    """Call Automation callbacks: CloudEvents 1.0 of type `Microsoft.Communication.*` (one object is accepted too).
    At most 256 KB. Call Automation shapes these, so other attributes are accepted and ignored."""

    model_config = ConfigDict(strict=True)

    root: list[CallbackEvent] = Field(min_length=1)


def callback_schemas() -> dict[str, Any]:
    """`CallEvents` for components.schemas, its event and data inline: objects Call Automation owns, left open."""
    return {"CallEvents": inline_schema(CallEvents)}


def parse_callbacks(body: bytes) -> list[CallEvent]:
    """The batch ACS posted to the callback URL, as the events the call service applies; InvalidInput (a 400)
    naming each field of each event that is wrong, before anything acts on the batch."""
    payload = _json(body)
    items = [payload] if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not items:
        raise InvalidInput("callback body must be a non-empty JSON array of CloudEvents")
    try:
        events = CallEvents.model_validate(items).root
    except ValidationError as exc:
        raise InvalidInput(_describe(exc)) from None
    # The data as sent, all of it: the service reads resultInformation and mediaStreamingUpdate from it.
    return [CallEvent(event_id=event.id, type=event.type[len(CALL_AUTOMATION_PREFIX):],
                      call_connection_id=event.data.call_connection_id, correlation_id=event.data.correlation_id,
                      data=item["data"]) for event, item in zip(events, items, strict=True)]


def _json(body: bytes) -> Any:
    if len(body) > MAX_CALLBACK_BYTES:
        raise InvalidInput(f"callback batches are at most {MAX_CALLBACK_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("callback body is not valid JSON") from None
    except RecursionError:  # deeply nested arrays fit in the size limit and overflow Python's stack
        raise InvalidInput("callback body is nested too deeply") from None


def _describe(exc: ValidationError) -> str:
    """One line per error, each naming the event by its place in the batch: `event 0.data.correlationId: ...`."""
    problems = []
    for error in exc.errors(include_url=False):
        index, *path = error["loc"]
        where = f"event {index}" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        message = "must be an object" if error["type"] in _NOT_AN_OBJECT else error["msg"]
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
