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
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from local.acs.events import event_grid_event, now_iso
from local.acs.repeatability import Refusal
from local.acs.texting import E164, TextingApi, error

SMS_FUNCTION = "sms_events"  # the Event Grid trigger in functions/sms.py
SMS_NUMBER = "+18005550100"  # the emulated resource's toll-free number
RECEIVED = "Microsoft.Communication.SMSReceived"
DELIVERY_REPORT = "Microsoft.Communication.SMSDeliveryReportReceived"
MAX_MESSAGE = 2048  # the longest message body the emulator takes
#: Seconds between a text's acceptance and its delivery report (a phone on a good network, sped up).
REPORT_DELAY_SECONDS = 0.3


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


class SmsApi(TextingApi[OutboxText]):
    """The SMS module of the ACS emulator (an `ApiModule`); its driver routes and event delivery are texting.py's."""

    name = "sms"
    send_path = "/sms"
    function = SMS_FUNCTION
    inbound_path = "/_emulator/sms/inbound"
    outbox_path = "/_emulator/sms"

    def __init__(self, number: str = SMS_NUMBER, *, report_delay: float = REPORT_DELAY_SECONDS) -> None:
        super().__init__()
        self.number = number
        self.report_delay = report_delay

    # The API ---------------------------------------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        if not request.query.get("api-version"):
            return error(400, "MissingApiVersionParameter", "the api-version query parameter is required")
        if self._faults:
            return self._fail(self._faults[0])
        try:
            body = json.loads(await request.read())
        except ValueError:
            return error(400, "BadRequest", "the body is not JSON")
        if problem := self._check(body):
            return error(400, "BadRequest", problem)
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
        if not E164.match(to):
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

    def _received(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A customer texts our number: the SMSReceived event as ACS would build it."""
        phone, text = body.get("from"), body.get("text")
        if not isinstance(phone, str) or not E164.match(phone):
            raise ValueError('"from" must be an E.164 number like "+15555550100"')
        if not isinstance(text, str) or not text.strip():
            raise ValueError('"text" must be a non-empty string')
        data = {
            "MessageId": str(body.get("messageId") or f"Incoming_{uuid.uuid4().hex}"),
            "From": phone,
            "To": str(body.get("to") or self.number),
            "Message": text,
            "ReceivedTimestamp": str(body.get("receivedTimestamp") or now_iso()),
            "SegmentCount": max(1, -(-len(text) // 160)),
        }
        event = event_grid_event(RECEIVED, f"/phonenumber/{data['To'].lstrip('+')}", data)
        return event, {"messageId": data["MessageId"]}
