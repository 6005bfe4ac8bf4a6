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
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from aiohttp import web

from local.acs.events import event_grid_event, now_iso, post_event_grid
from local.acs.repeatability import Refusal, Repeats

log = logging.getLogger("local.acs.messages")

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
#: Event Grid retries a failed delivery with backoff; locally the schedule is seconds, not minutes.
REDELIVERY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MEDIA = {"image": "image/jpeg", "audio": "audio/ogg", "video": "video/mp4", "document": "application/pdf",
          "sticker": "image/webp"}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


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


@dataclass
class Fault:
    status: int
    count: int
    code: str
    message: str
    retry_after: float | None = None


class MessagesApi:
    """The Advanced Messaging module of the ACS emulator (an `ApiModule`)."""

    name = "messages"

    def __init__(self, channel_id: str = CHANNEL_ID, *, status_step: float = STATUS_STEP_SECONDS) -> None:
        self.channel_id = channel_id
        self.status_step = status_step
        self.functions_url = ""
        self.outbox: list[OutboxMessage] = []
        self.last_inbound: dict[str, datetime] = {}  # E.164 → when the customer last wrote (opens the window)
        self.unreachable: set[str] = set()  # E.164 numbers without WhatsApp: accepted, then failed
        self._repeats = Repeats()  # Repeatability-Request-ID → the first answer's body, for five minutes
        self._faults: list[Fault] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None

    def install(self, app: web.Application, emulator: Any) -> None:
        self.functions_url = emulator.functions_url
        emulator.state[self.name] = self
        app.router.add_post("/messages/notifications:send", self.send)
        app.router.add_post("/_emulator/inbound", self.inbound)
        app.router.add_get("/_emulator/messages", self.list_outbox)
        app.router.add_post("/_emulator/messages/faults", self.add_fault)
        app.router.add_post("/_emulator/messages/unreachable", self.add_unreachable)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)

    async def _start(self, app: web.Application) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def _stop(self, app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # The API ---------------------------------------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        if not request.query.get("api-version"):
            return _error(400, "MissingApiVersionParameter", "the api-version query parameter is required")
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
            return _error(400, "BadRequest", "the body is not JSON")
        if isinstance(problem := self._check(body), str):
            return _error(400, "BadRequest", problem)

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
        if not isinstance(to, list) or not to or not all(isinstance(t, str) and _E164.match(t) for t in to):
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

    def _fail(self, fault: Fault) -> web.Response:
        fault.count -= 1
        if fault.count <= 0:
            self._faults.pop(0)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return web.json_response(
            {"error": {"code": fault.code, "message": fault.message}}, status=fault.status, headers=headers
        )

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

    async def inbound(self, request: web.Request) -> web.Response:
        """A customer writes: record when (the window), build the event as ACS would and deliver it."""
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return _error(400, "BadRequest", "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "the body must be a JSON object")
        try:
            data, received = self._received_data(body)
        except ValueError as exc:
            return _error(400, "BadRequest", str(exc))
        phone = body["from"]
        if phone not in self.last_inbound or received > self.last_inbound[phone]:
            self.last_inbound[phone] = received
        event = event_grid_event(RECEIVED, f"advancedMessage/sender/{_digits(phone)}/recipient/{self.channel_id}", data)
        if body.get("deliver") is False:  # the caller delivers it (a batch, a duplicate): only build and record it
            return web.json_response({"messageId": data.get("messageId"), "eventId": event["id"], "event": event,
                                      "status": None})

        status = await self._post(event)
        answer = {"messageId": data.get("messageId"), "eventId": event["id"], "event": event, "status": status}
        if 200 <= status < 300:
            return web.json_response(answer)
        self._spawn(self._redeliver(event))
        if status == 0:
            return web.json_response(
                {**answer, "error": f"the Functions host at {self.functions_url} is not answering; "
                                    "retrying like Event Grid"}, status=502
            )
        return web.json_response({**answer, "redelivering": True})

    def _received_data(self, body: dict[str, Any]) -> tuple[dict[str, Any], datetime]:
        phone = body.get("from")
        if not isinstance(phone, str) or not _E164.match(phone):
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

    async def list_outbox(self, request: web.Request) -> web.Response:
        to = request.query.get("to")
        return web.json_response([m.to_json() for m in self.outbox if to is None or m.to == to])

    async def add_fault(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            fault = Fault(int(body["status"]), int(body.get("count", 1)), str(body.get("code") or "InjectedFault"),
                          str(body.get("message") or "a fault injected through /_emulator/messages/faults"),
                          float(body["retryAfter"]) if body.get("retryAfter") is not None else None)
        except (ValueError, KeyError, TypeError):
            return _error(400, "BadRequest",
                          'send {"status": 503, "count": 2} (optional "code", "message", "retryAfter")')
        if not 400 <= fault.status <= 599 or fault.count < 1:
            return _error(400, "BadRequest", "status must be 4xx or 5xx and count at least 1")
        self._faults.append(fault)
        return web.json_response({"queued": [f.__dict__ for f in self._faults]})

    async def add_unreachable(self, request: web.Request) -> web.Response:
        try:
            phone = json.loads(await request.read()).get("phone")
        except (ValueError, AttributeError):
            phone = None
        if not isinstance(phone, str) or not _E164.match(phone):
            return _error(400, "BadRequest", 'send {"phone": "+15555550100"}')
        self.unreachable.add(phone)
        return web.json_response({"unreachable": sorted(self.unreachable)})

    # Event delivery --------------------------------------------------------------------------------------------

    async def _post(self, event: dict[str, Any]) -> int:
        """One delivery attempt; 0 when the host cannot be reached."""
        assert self._session is not None, "the emulator app has not started"
        try:
            return await post_event_grid(self._session, self.functions_url, WHATSAPP_FUNCTION, [event])
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return 0

    async def _deliver(self, event: dict[str, Any]) -> None:
        if not 200 <= await self._post(event) < 300:
            await self._redeliver(event)

    async def _redeliver(self, event: dict[str, Any]) -> None:
        for delay in REDELIVERY_DELAYS:
            await asyncio.sleep(delay)
            if 200 <= await self._post(event) < 300:
                return
        log.warning("gave up delivering %s %s after %d retries", event["eventType"], event["id"],
                    len(REDELIVERY_DELAYS))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _template(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    values = {v.get("name"): v.get("text") for v in raw.get("values") or [] if isinstance(v, dict)}
    return {"name": raw.get("name"), "language": raw.get("language"), "values": values}

