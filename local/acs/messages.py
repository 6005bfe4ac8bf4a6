"""Advanced Messaging (WhatsApp) in the ACS emulator: the REST subset the SDK's send uses, and a driver surface.

API (HMAC-checked by the emulator, docs/protocols.md, "Advanced Messaging send"):
  POST /messages/notifications:send?api-version=...   text or template → 202 {"receipts": [{"messageId", "to"}]}
    Repeatability is kept as ACS keeps it (repeatability.py): a repeat within five minutes of its first-sent time
    gets the first answer back and sends nothing; a first-sent time older than that is refused with 412. The 24-hour rule
    is enforced the way the service reports it: free text to a number that has not written in 24 hours is accepted,
    then fails with channel code 131047. Accepted messages go sent → delivered → read, each posted back to the
    Functions host as an AdvancedMessageDeliveryStatusUpdated event, retried like Event Grid retries.

Driver (unauthenticated, for people, the simulator and tests):
  POST /_emulator/inbound     a customer's message: {"from": "+1555...", "text": "..."} (or "type": image, audio,
                              location, button, interactive, reaction ..., optional "messageId",
                              "receivedTimestamp") → an AdvancedMessageReceived event posted to `whatsapp_events`;
                              with "deliver": false it is only built and returned, for the caller to post.
                              "messageId": null sends it without one, as the docs' samples are (the answer's
                              messageId is then null too; its eventId is what the app keys it by)
  GET  /_emulator/messages    the outbox, newest last (?to=+1555... for one number)
  POST /_emulator/messages/faults   {"status": 503, "count": 2}: the next sends fail with that status
  POST /_emulator/messages/unreachable   {"phone": "+1555..."}: a number without WhatsApp; messages to it are
                              accepted, then reported failed with channel code 131026 (Message Undeliverable)
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from local.acs.events import event_grid_event, now_iso
from local.acs.repeatability import Refusal
from local.acs.texting import E164, TextingApi, error

WHATSAPP_FUNCTION = "whatsapp_events"  # the Event Grid trigger in functions/whatsapp.py
CHANNEL_ID = "7d6e5f4a-3b2c-4d1e-8f90-a1b2c3d4e5f6"  # the emulated resource's WhatsApp channel registration id
RECEIVED = "Microsoft.Communication.AdvancedMessageReceived"
DELIVERY_STATUS = "Microsoft.Communication.AdvancedMessageDeliveryStatusUpdated"
WINDOW = timedelta(hours=24)
REENGAGEMENT = {"channelCode": "131047", "channelMessage": "Re-engagement message"}
UNDELIVERABLE = {"channelCode": "131026", "channelMessage": "Message Undeliverable"}  # e.g. the number has no WhatsApp
MAX_TEXT = 4096  # WhatsApp's limit on a text message body
#: Seconds between a message's accepted → sent → delivered → read (a phone on a good network, sped up).
STATUS_STEP_SECONDS = 0.3
_MEDIA = {"image": "image/jpeg", "audio": "audio/ogg", "video": "video/mp4", "document": "application/pdf",
          "sticker": "image/webp"}


def _digits(phone: str) -> str:
    return phone.removeprefix("+")  # ACS writes WhatsApp numbers without the +


@dataclass
class OutboxMessage:
    message_id: str
    to: str
    kind: str  # text or template
    content: str | None  # the text
    template: dict[str, Any] | None  # {name, language, values}
    repeatability_id: str | None
    status: str = "accepted"  # accepted, sent, delivered, read, failed
    error: dict[str, str] | None = None
    sent_at: str = field(default_factory=now_iso)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"messageId": self.message_id, "to": self.to, "kind": self.kind, "status": self.status}
        if self.kind == "text":
            body["content"] = self.content
        else:
            body["template"] = self.template["name"] if self.template else None
            body["language"] = self.template["language"] if self.template else None
            body["templateValues"] = self.template["values"] if self.template else {}
        return {**body, "error": self.error, "repeatabilityRequestId": self.repeatability_id, "sentAt": self.sent_at}


class MessagesApi(TextingApi[OutboxMessage]):
    """The Advanced Messaging module of the ACS emulator (an `ApiModule`); its driver routes and event delivery are
    texting.py's. Its unreachable numbers are numbers without WhatsApp."""

    name = "messages"
    send_path = "/messages/notifications:send"
    function = WHATSAPP_FUNCTION
    inbound_path = "/_emulator/inbound"
    outbox_path = "/_emulator/messages"

    def __init__(self, channel_id: str = CHANNEL_ID, *, status_step: float = STATUS_STEP_SECONDS) -> None:
        super().__init__()
        self.channel_id = channel_id
        self.status_step = status_step
        self.last_inbound: dict[str, datetime] = {}  # E.164 → when the customer last wrote (opens the window)

    # The API ---------------------------------------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        if not request.query.get("api-version"):
            return error(400, "MissingApiVersionParameter", "the api-version query parameter is required")
        repeat_id = request.headers.get("Repeatability-Request-ID")
        first_sent = request.headers.get("Repeatability-First-Sent")
        seen = self._repeats.check(repeat_id, first_sent)
        if isinstance(seen, Refusal):
            return web.json_response({"error": {"code": seen.code, "message": seen.message}}, status=seen.status,
                                     headers={"Repeatability-Result": "rejected"})
        if seen is not None:  # the same request again: the first answer, nothing sent
            return web.json_response(seen[1], status=202, headers={"Repeatability-Result": "accepted"})
        if self._faults:
            return self._fail(self._faults[0])
        try:
            body = json.loads(await request.read())
        except ValueError:
            return error(400, "BadRequest", "the body is not JSON")
        if isinstance(problem := self._check(body), str):
            return error(400, "BadRequest", problem)

        receipts = []
        for to in body["to"]:
            message = OutboxMessage(
                message_id=str(uuid.uuid4()),
                to=to,
                kind=body["kind"],
                content=body.get("content"),
                template=_template(body.get("template")),
                repeatability_id=repeat_id,
            )
            self.outbox.append(message)
            receipts.append({"messageId": message.message_id, "to": to})
            self._spawn(self._progress(message, in_window=message.kind == "template" or self._window_open(to)))
        answer = {"receipts": receipts}
        self._repeats.remember(repeat_id, first_sent, answer)
        return web.json_response(answer, status=202, headers={"Repeatability-Result": "accepted"})

    def _check(self, body: Any) -> str | None:
        """Why the service would refuse this send (400), or None."""
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        if body.get("channelRegistrationId") != self.channel_id:
            return f"channelRegistrationId {body.get('channelRegistrationId')!r} is not a channel of this resource"
        to = body.get("to")
        if not isinstance(to, list) or not to or not all(isinstance(t, str) and E164.match(t) for t in to):
            return '"to" must be a non-empty list of E.164 numbers like "+15555550100"'
        kind = body.get("kind")
        if kind == "text":
            content = body.get("content")
            if not isinstance(content, str) or not content.strip():
                return "a text message needs non-empty content"
            if len(content) > MAX_TEXT:
                return f"text content is {len(content)} characters; WhatsApp allows {MAX_TEXT}"
        elif kind == "template":
            template = body.get("template")
            if not isinstance(template, dict) or not template.get("name") or not template.get("language"):
                return "a template message needs template.name and template.language"
        else:
            return f"kind {kind!r} is not emulated; use text or template"
        return None

    def _window_open(self, to: str) -> bool:
        last = self.last_inbound.get(to)
        return last is not None and datetime.now(timezone.utc) - last < WINDOW

    async def _progress(self, message: OutboxMessage, *, in_window: bool) -> None:
        """Walk one accepted message through its delivery statuses, telling the app about each, like ACS does. The
        service accepts a send before WhatsApp has tried it: a number without WhatsApp fails only then."""
        unreachable = message.to in self.unreachable
        steps = ["sent", "delivered", "read"] if in_window and not unreachable else ["failed"]
        for status in steps:
            await asyncio.sleep(self.status_step)
            message.status = status
            data: dict[str, Any] = {
                "messageId": message.message_id,
                "status": status.capitalize(),  # as the docs show it; the SDK enum is lowercase
                "channelType": "whatsapp",
                "from": self.channel_id,
                "to": _digits(message.to),
                "receivedTimestamp": now_iso(),
            }
            if status == "failed":
                message.error = dict(UNDELIVERABLE if unreachable else REENGAGEMENT)
                data["error"] = dict(message.error)
            subject = f"advancedMessage/sender/{self.channel_id}/recipient/{_digits(message.to)}"
            await self._deliver(event_grid_event(DELIVERY_STATUS, subject, data))

    # The driver ------------------------------------------------------------------------------------------------

    def _received(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A customer writes: record when (the window) and build the AdvancedMessageReceived event as ACS would."""
        data, received = self._received_data(body)
        phone = body["from"]
        if phone not in self.last_inbound or received > self.last_inbound[phone]:
            self.last_inbound[phone] = received
        event = event_grid_event(RECEIVED, f"advancedMessage/sender/{_digits(phone)}/recipient/{self.channel_id}", data)
        return event, {"messageId": data.get("messageId"), "eventId": event["id"]}

    def _received_data(self, body: dict[str, Any]) -> tuple[dict[str, Any], datetime]:
        phone = body.get("from")
        if not isinstance(phone, str) or not E164.match(phone):
            raise ValueError('"from" must be an E.164 number like "+15555550100"')
        kind = str(body.get("type") or "text")
        received = datetime.now(timezone.utc)
        if body.get("receivedTimestamp"):
            try:
                received = datetime.fromisoformat(str(body["receivedTimestamp"])).astimezone(timezone.utc)
            except ValueError:
                raise ValueError('"receivedTimestamp" must be an ISO 8601 time') from None
        data: dict[str, Any] = {
            "channelType": "whatsapp",
            "from": _digits(phone),
            "to": self.channel_id,
            "messageId": str(body.get("messageId") or uuid.uuid4()),
            "messageType": kind,
            "receivedTimestamp": received.isoformat(timespec="milliseconds"),
        }
        if "messageId" in body and body["messageId"] is None:  # as in the docs' samples: the event has no messageId
            del data["messageId"]
        text = body.get("text")
        if kind == "text":
            if not isinstance(text, str) or not text.strip():
                raise ValueError('a text message needs "text"')
            data["content"] = text
        elif kind == "button":
            data["button"] = {"text": text or "", "payload": body.get("payload") or text or ""}
        elif kind == "interactive":
            data["interactive"] = {"type": "buttonReply", "buttonReply": {"id": body.get("payload") or "1",
                                                                          "title": text or ""}}
        elif kind == "reaction":
            data["reaction"] = {"messageId": body.get("replyTo") or "", "emoji": body.get("emoji") or "👍"}
        elif kind == "location":
            data["location"] = {"latitude": 39.78, "longitude": -89.65}
        else:
            data["media"] = {"mimeType": _MEDIA.get(kind, "application/octet-stream"), "id": str(uuid.uuid4())}
            if body.get("caption"):
                data["media"]["caption"] = body["caption"]
        return data, received


def _template(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    values = {v.get("name"): v.get("text") for v in raw.get("values") or [] if isinstance(v, dict)}
    return {"name": raw.get("name"), "language": raw.get("language"), "values": values}

