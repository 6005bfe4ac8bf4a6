"""SMS in the ACS emulator: the REST send the `azure-communication-sms` SDK makes, and a driver for inbound texts.

API (HMAC-checked by the emulator like every ACS route; docs/sms.md "The emulator"):
  POST /sms?api-version=...   {"from", "smsRecipients": [{"to", "repeatabilityRequestId", "repeatabilityFirstSent"}],
                               "message", "smsSendOptions": {"enableDeliveryReport", "tag"}}
    → 202 {"value": [{"to", "messageId", "httpStatusCode", "repeatabilityResult", "successful", "errorMessage"}]}
    One result per recipient, as the service gives them: a recipient that is not an E.164 number gets its own 400
    result while the others go. Repeatability is per recipient and kept as ACS keeps it (repeatability.py): the id
    must be a UUID and come with a first-sent HTTP date; a repeat within five minutes of its first-sent time gets the
    first result back and nothing is sent; a first-sent time older than that gets its own 412 result, "rejected". `from` must be the
    emulated resource's number. With enableDeliveryReport, an SMSDeliveryReportReceived event follows each text
    (Delivered, or Failed for a number marked unreachable), posted to `sms_events` and redelivered like Event Grid.

Driver (unauthenticated, for people, the simulator and tests):
  POST /_emulator/sms/inbound       {"from": "+1555...", "text": "..."} (optional "messageId", "to",
                                    "receivedTimestamp", "deliver": false to only build the event) → SMSReceived
  GET  /_emulator/sms               the SMS outbox, newest last (?to=+1555... for one number)
  POST /_emulator/sms/faults        {"status": 503, "count": 2}: the next sends fail with that status
  POST /_emulator/sms/unreachable   {"phone": "+1555..."}: texts to it are accepted, then reported Failed
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from local.acs.events import event_grid_event, now_iso, post_event_grid
from local.acs.messages import REDELIVERY_DELAYS, Fault
from local.acs.repeatability import Refusal, Repeats

log = logging.getLogger("local.acs.sms")

SMS_FUNCTION = "sms_events"  # the Event Grid trigger in functions/sms.py
SMS_NUMBER = "+18005550100"  # the emulated resource's toll-free number
RECEIVED = "Microsoft.Communication.SMSReceived"
DELIVERY_REPORT = "Microsoft.Communication.SMSDeliveryReportReceived"
MAX_MESSAGE = 2048  # the longest message body the emulator takes
#: Seconds between a text's acceptance and its delivery report (a phone on a good network, sped up).
REPORT_DELAY_SECONDS = 0.3
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@dataclass
class OutboxText:
    message_id: str
    sender: str
    to: str
    message: str
    tag: str | None
    repeatability_id: str | None
    delivery_report: bool
    status: str = "accepted"  # accepted, delivered, failed
    sent_at: str = field(default_factory=now_iso)

    def to_json(self) -> dict[str, Any]:
        return {"messageId": self.message_id, "from": self.sender, "to": self.to, "message": self.message,
                "tag": self.tag, "status": self.status, "repeatabilityRequestId": self.repeatability_id,
                "deliveryReport": self.delivery_report, "sentAt": self.sent_at}


class SmsApi:
    """The SMS module of the ACS emulator (an `ApiModule`)."""

    name = "sms"

    def __init__(self, number: str = SMS_NUMBER, *, report_delay: float = REPORT_DELAY_SECONDS) -> None:
        self.number = number
        self.report_delay = report_delay
        self.functions_url = ""
        self.outbox: list[OutboxText] = []
        self.unreachable: set[str] = set()
        self._repeats = Repeats()  # repeatabilityRequestId → the recipient's first result, for five minutes
        self._faults: list[Fault] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None

    def install(self, app: web.Application, emulator: Any) -> None:
        self.functions_url = emulator.functions_url
        emulator.state[self.name] = self
        app.router.add_post("/sms", self.send)
        app.router.add_post("/_emulator/sms/inbound", self.inbound)
        app.router.add_get("/_emulator/sms", self.list_outbox)
        app.router.add_post("/_emulator/sms/faults", self.add_fault)
        app.router.add_post("/_emulator/sms/unreachable", self.add_unreachable)
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
        if self._faults:
            return self._fail(self._faults[0])
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "BadRequest", "the body is not JSON")
        if problem := self._check(body):
            return _error(400, "BadRequest", problem)
        options = body.get("smsSendOptions") or {}
        results = [self._send_one(body, recipient, options) for recipient in body["smsRecipients"]]
        return web.json_response({"value": results}, status=202)

    def _check(self, body: Any) -> str | None:
        """Why the service would refuse the whole request (400), or None."""
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        if body.get("from") != self.number:
            return f"from {body.get('from')!r} is not a number of this resource (it has {self.number})"
        recipients = body.get("smsRecipients")
        if not isinstance(recipients, list) or not recipients or not all(
                isinstance(r, dict) and isinstance(r.get("to"), str) for r in recipients):
            return '"smsRecipients" must be a non-empty list of {"to": "+1555..."}'
        message = body.get("message")
        if not isinstance(message, str) or not message:
            return '"message" must be a non-empty string'
        if len(message) > MAX_MESSAGE:
            return f"message is {len(message)} characters; at most {MAX_MESSAGE}"
        options = body.get("smsSendOptions")
        if options is not None and not isinstance(options.get("enableDeliveryReport"), bool):
            return "smsSendOptions.enableDeliveryReport is required and must be true or false"
        for recipient in recipients:
            seen = self._repeats.check(recipient.get("repeatabilityRequestId"), recipient.get("repeatabilityFirstSent"))
            if isinstance(seen, Refusal) and seen.status == 400:  # a malformed pair refuses the whole request
                return seen.message
        return None

    def _send_one(self, body: dict[str, Any], recipient: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        to, repeat_id = recipient["to"], recipient.get("repeatabilityRequestId")
        first_sent = recipient.get("repeatabilityFirstSent")
        seen = self._repeats.check(repeat_id, first_sent)
        if isinstance(seen, Refusal):  # too old to be tracked: this recipient is refused, the others go
            return {"to": to, "httpStatusCode": seen.status, "successful": False, "repeatabilityResult": "rejected",
                    "errorMessage": seen.message}
        if seen is not None:  # the same text again: the first result, nothing sent
            return seen[1]
        if not _E164.match(to):
            return {"to": to, "httpStatusCode": 400, "successful": False,
                    "errorMessage": "Invalid To phone number format."}
        text = OutboxText(message_id=f"Outgoing_{uuid.uuid4().hex}", sender=body["from"], to=to,
                          message=body["message"], tag=options.get("tag"), repeatability_id=repeat_id,
                          delivery_report=bool(options.get("enableDeliveryReport")))
        self.outbox.append(text)
        result = {"to": to, "messageId": text.message_id, "httpStatusCode": 202, "successful": True}
        if repeat_id:
            result["repeatabilityResult"] = "accepted"
            self._repeats.remember(repeat_id, first_sent, result)
        self._spawn(self._report(text))
        return result

    def _fail(self, fault: Fault) -> web.Response:
        fault.count -= 1
        if fault.count <= 0:
            self._faults.pop(0)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return web.json_response({"error": {"code": fault.code, "message": fault.message}}, status=fault.status,
                                 headers=headers)

    async def _report(self, text: OutboxText) -> None:
        """The carrier's answer, a moment later: delivered, or failed for an unreachable number."""
        await asyncio.sleep(self.report_delay)
        delivered = text.to not in self.unreachable
        text.status = "delivered" if delivered else "failed"
        if not text.delivery_report:
            return
        data = {
            "MessageId": text.message_id,
            "From": text.sender,
            "To": text.to,
            "DeliveryStatus": "Delivered" if delivered else "Failed",
            "DeliveryStatusDetails": "No error." if delivered else "The recipient's carrier could not deliver it.",
            "ReceivedTimestamp": now_iso(),
            "DeliveryAttempts": [{"Timestamp": now_iso(), "SegmentsSucceeded": int(delivered),
                                  "SegmentsFailed": int(not delivered)}],
        }
        if text.tag:
            data["Tag"] = text.tag
        await self._deliver(event_grid_event(DELIVERY_REPORT, f"/phonenumber/{text.sender.lstrip('+')}", data))

    # The driver ------------------------------------------------------------------------------------------------

    async def inbound(self, request: web.Request) -> web.Response:
        """A customer texts our number: build the SMSReceived event as ACS would and deliver it."""
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return _error(400, "BadRequest", "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "the body must be a JSON object")
        phone, text = body.get("from"), body.get("text")
        if not isinstance(phone, str) or not _E164.match(phone):
            return _error(400, "BadRequest", '"from" must be an E.164 number like "+15555550100"')
        if not isinstance(text, str) or not text.strip():
            return _error(400, "BadRequest", '"text" must be a non-empty string')
        data = {
            "MessageId": str(body.get("messageId") or f"Incoming_{uuid.uuid4().hex}"),
            "From": phone,
            "To": str(body.get("to") or self.number),
            "Message": text,
            "ReceivedTimestamp": str(body.get("receivedTimestamp") or now_iso()),
            "SegmentCount": max(1, -(-len(text) // 160)),
        }
        event = event_grid_event(RECEIVED, f"/phonenumber/{data['To'].lstrip('+')}", data)
        if body.get("deliver") is False:
            return web.json_response({"messageId": data["MessageId"], "event": event, "status": None})
        status = await self._post(event)
        answer = {"messageId": data["MessageId"], "event": event, "status": status}
        if 200 <= status < 300:
            return web.json_response(answer)
        self._spawn(self._redeliver(event))
        if status == 0:
            return web.json_response({**answer, "error": f"the Functions host at {self.functions_url} is not "
                                                         "answering; retrying like Event Grid"}, status=502)
        return web.json_response({**answer, "redelivering": True})

    async def list_outbox(self, request: web.Request) -> web.Response:
        to = request.query.get("to")
        return web.json_response([t.to_json() for t in self.outbox if to is None or t.to == to])

    async def add_fault(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            fault = Fault(int(body["status"]), int(body.get("count", 1)), str(body.get("code") or "InjectedFault"),
                          str(body.get("message") or "a fault injected through /_emulator/sms/faults"),
                          float(body["retryAfter"]) if body.get("retryAfter") is not None else None)
        except (ValueError, KeyError, TypeError):
            return _error(400, "BadRequest", 'send {"status": 503, "count": 2} (optional "code", "message", '
                                             '"retryAfter")')
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
        assert self._session is not None, "the emulator app has not started"
        try:
            return await post_event_grid(self._session, self.functions_url, SMS_FUNCTION, [event])
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

