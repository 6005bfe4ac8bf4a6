"""Call Automation in the ACS emulator: the REST subset the SDK calls, and a driver surface that places calls.

A call is placed with `POST /_emulator/calls {"from": "+15555550100"}`: the emulator posts an IncomingCall event to
the Functions host's Event Grid endpoint, as ACS does through Event Grid. When the app answers (`POST
/calling/callConnections:answer`, HMAC-checked like every API route), the emulator posts CallConnected to the
callback URL the app gave, opens the media WebSocket to its transport URL (`media.py`) and posts
MediaStreamingStarted, or MediaStreamingFailed if the WebSocket cannot be opened. Hang-up, play and start/stop
media streaming answer and call back the same way
(docs/protocols.md, "Call Automation callbacks", "Media streaming" and "Call Automation REST calls"). A transfer
rings its target (a phone number or an ACS user) through `phones.py` with the request's custom context: answered,
the app gets CallTransferAccepted and its own connection ends, as ACS ends it; declined, missed or unreachable,
CallTransferFailed, and the call goes on with the app.

Callbacks arrive as ACS delivers them: each posted on its own, so several are in flight at once (answering a call
posts CallConnected and ParticipantsUpdated together, in either order, while the media stream starts), and now and
then one is posted again, same event id and all, as a retry would (`redelivery`, a rate drawn from a seeded random
generator: `POST /_emulator/calls/redelivery {"rate": 1.0, "seed": 7}` makes every callback come twice).

The unauthenticated `/_emulator/calls/...` routes are for people and tests: list and inspect calls, push caller
audio, press keys on the caller's keypad (sent to the app as DtmfData when it answered with `enableDtmfTones`), read
the audio the app sent, hang up as the caller, redeliver the IncomingCall event, and a WebSocket
(`/_emulator/calls/{id}/media`) on which the phone simulator sends caller audio and keys and hears the app.

The app places calls too (`POST /calling/callConnections`, the SDK's `create_call`): the body must name one target
(a phone number, which then needs a `sourceCallerIdNumber` of this resource, or an ACS user) and an http(s)
`callbackUri`, or it gets the 400 ACS gives. The target rings: a phone registered for it (`phones.py`; `python -m
local.phone --wait-for-call --as <number>`) or a scripted persona (`voicemail.py`: a person, an answering machine,
busy, no answer). Answered, the call goes on exactly as an answered inbound call does (CallConnected, media
streaming); busy or unanswered, the app gets CreateCallFailed (486 Busy Here, or 408 after the ring time).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from local.acs.events import event_grid_event, now_iso, post_callbacks, post_event_grid
from local.acs.media import KEYS, CallAudio, MediaLeg
from local.acs.oidc import CallbackSigner
from local.acs.phones import ANSWERED, CANCELLED, DECLINED, MISSED, TRANSFER_RING_SECONDS, UNATTENDED, Phones, Transfer
from local.acs.voicemail import BUSY, NO_ANSWER, Personas
from shared import redact

log = logging.getLogger("local.acs.calls")

INCOMING_CALL_FUNCTION = "incoming_call"  # the Event Grid trigger in functions/calls.py
DEFAULT_CALLEE = "+18005550100"  # the contact center's number on the emulated resource
RESOURCE_ID = "6b2d6f2e-0000-4000-8000-00000000ac50"  # the emulated resource's immutable id (JWT audience)
RING_SECONDS = 30.0  # an IncomingCall context is good while the call rings
MAX_CALLS = 200  # calls kept for inspection, oldest dropped first
SAMPLE_RATES = {"pcm16kmono": 16000, "pcm24kmono": 24000}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_ACS_USER = re.compile(r"^8:acs:[A-Za-z0-9_:.-]{1,256}$")
# ACS's rules for custom context (docs/desk.md): SIP header names X-MS-Custom-* (or X-*) of at most 64 characters,
# values of at most 256 in a small alphabet, at most 5 of them; VoIP names of 64, values of 1024.
_SIP_NAME = re.compile(r"^X-[A-Za-z0-9.!%*_+~-]{1,62}$", re.IGNORECASE)
_SIP_VALUE = re.compile(r"^[A-Za-z0-9=;.!%*_+~-]{0,256}$")
_RESERVED_SIP = re.compile(r"^X-MS-(?!Custom-)", re.IGNORECASE)
#: What CallTransferFailed says for each way a transfer can fail here (code, subcode, message).
_TRANSFER_FAILED = {
    DECLINED: (603, 0, "The transfer target declined the call."),
    MISSED: (408, 0, "The transfer target did not answer."),
    UNATTENDED: (404, 0, "The transfer target is not signed in to take calls."),
    CANCELLED: (487, 0, "The caller hung up before the transfer was answered."),
}
_ENDED = ("disconnected", "transferred", "missed", "busy")
#: What CreateCallFailed says when a call the app placed does not connect (code, subcode, message).
_NOT_CONNECTED = {
    BUSY: (486, 0, "Busy Here: the callee is on another call."),
    NO_ANSWER: (408, 0, "The callee did not answer before the call timed out."),
    DECLINED: (603, 0, "The callee declined the call."),
}
#: The share of callbacks posted a second time, and how long after the first (seconds, at most).
REDELIVERY_RATE = 0.1
REDELIVERY_DELAY = 0.3
STARTED = ("mediaStreamingStarted", "subscriptionStarted")  # mediaStreamingUpdate status and details
STOPPED = ("mediaStreamingStopped", "subscriptionStopped")

CALLS_KEY = web.AppKey("acs_calls", object)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _phone(number: str) -> dict[str, Any]:
    return {"kind": "phoneNumber", "rawId": f"4:{number}", "phoneNumber": {"value": number}}


def _identifier(target: str) -> dict[str, Any]:
    if target.startswith("8:"):
        return {"kind": "communicationUser", "rawId": target, "communicationUser": {"id": target}}
    return _phone(target)


@dataclass
class EmulatedCall:
    correlation_id: str
    caller: str | None
    callee: str
    display_name: str = ""
    connection_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    server_call_id: str = field(default_factory=lambda: base64.urlsafe_b64encode(secrets.token_bytes(24)).decode())
    context: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    state: str = "ringing"  # ringing, connected, disconnected, transferred, missed, busy
    direction: str = "inbound"  # outbound: the app placed it (create_call)
    created_at: float = field(default_factory=time.time)
    event: dict[str, Any] = field(default_factory=dict)  # the IncomingCall event as first delivered
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    answer: dict[str, Any] | None = None  # the answer request the app sent
    answer_request_id: str | None = None
    callback_url: str = ""
    actions: list[dict[str, Any]] = field(default_factory=list)  # every API request for this call, in order
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # every callback posted, with the app's status
    transfer_target: str | None = None
    custom_context: dict[str, Any] | None = None  # what the latest transfer carried to the person
    audio: CallAudio = field(default_factory=CallAudio)
    media: MediaLeg | None = None
    listeners: set[web.WebSocketResponse] = field(default_factory=set)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def ended(self) -> bool:
        return self.state in _ENDED

    def properties(self) -> dict[str, Any]:
        """CallConnectionProperties as the service returns them."""
        media = (self.answer or {}).get("mediaStreamingOptions")
        props: dict[str, Any] = {
            "callConnectionId": self.connection_id,
            "serverCallId": self.server_call_id,
            "correlationId": self.correlation_id,
            "callConnectionState": {"ringing": "connecting", "connected": "connected"}.get(self.state, "disconnected"),
            "callbackUri": self.callback_url,
            "source": _phone(self.caller) if self.caller else {"kind": "unknown", "rawId": "4:anonymous"},
            "targets": [_identifier(self.callee)],
        }
        if media:
            state = "active" if self.media is not None and self.media.state == "streaming" else "inactive"
            props["mediaStreamingSubscription"] = {
                "id": self.connection_id, "state": state, "subscribedContentTypes": ["audio"],
            }
        return props

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.correlation_id,
            "call_connection_id": self.connection_id,
            "from": self.caller,
            "to": self.callee,
            "state": self.state,
            "direction": self.direction,
            "media": self.media.state if self.media else "idle",
            "transfer_target": self.transfer_target,
            "custom_context": self.custom_context,
        }

    def details(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "incoming_call_event": self.event,
            "deliveries": self.deliveries,
            "answer": self.answer,
            "answers": sum(1 for a in self.actions if a["op"] == "answer"),
            "actions": self.actions,
            "callbacks": self.callbacks,
            "audio": self.audio.summary(),
        }


class CallsApi:
    """The Call Automation module of the ACS emulator (an `ApiModule`)."""

    name = "calls"

    def __init__(self, *, sign_callbacks: bool = True, resource_id: str = RESOURCE_ID,
                 transfer_ring_seconds: float = TRANSFER_RING_SECONDS, redelivery: float = REDELIVERY_RATE,
                 seed: int | None = None) -> None:
        self.calls: OrderedDict[str, EmulatedCall] = OrderedDict()  # by correlation id
        self.redelivery = redelivery  # the share of callbacks posted twice
        self.random = random.Random(seed)  # which ones, and the order of callbacks posted together
        self.signer = CallbackSigner(resource_id) if sign_callbacks else None
        self.phones = Phones(transfer_ring_seconds)
        self.personas = Personas()
        self.source_numbers = {DEFAULT_CALLEE}  # the resource's numbers: what a placed call may show as caller id
        self.functions_url = ""
        self._session: aiohttp.ClientSession | None = None

    def install(self, app: web.Application, emulator: Any) -> None:
        self.functions_url = emulator.functions_url
        app[CALLS_KEY] = self
        emulator.state[self.name] = self
        api = "/calling/callConnections"
        app.router.add_post(api, self.create_call)
        app.router.add_post(api + ":answer", self.answer)
        app.router.add_get(api + "/{target}", self.get_call)
        app.router.add_delete(api + "/{target}", self.hang_up_self)
        app.router.add_post(api + "/{target}", self.call_action)  # {id}:terminate, :transferToParticipant, ...
        driver = "/_emulator/calls"
        app.router.add_post(driver, self.place_call)
        app.router.add_get(driver, self.list_calls)
        app.router.add_get(driver + "/{id}", self.show_call)
        app.router.add_post(driver + "/redelivery", self.set_redelivery)
        app.router.add_post(driver + "/{id}/redeliver", self.redeliver)
        app.router.add_post(driver + "/{id}/audio", self.push_audio)
        app.router.add_post(driver + "/{id}/keys", self.press_keys)
        app.router.add_get(driver + "/{id}/audio/{which}", self.read_audio)
        app.router.add_post(driver + "/{id}/hangup", self.caller_hangs_up)
        app.router.add_get(driver + "/{id}/media", self.phone_socket)
        self.phones.install(app)
        self.personas.install(app)
        if self.signer is not None:
            self.signer.install(app)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)

    async def _start(self, app: web.Application) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def _stop(self, app: web.Application) -> None:
        for call in list(self.calls.values()):
            await self._end(call, "disconnected", notify_app=False)
            for task in list(call.tasks):
                task.cancel()
            await asyncio.gather(*call.tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the emulator app has not started"
        return self._session

    # The driver: placing and watching calls ---------------------------------------------------------------------

    async def place_call(self, request: web.Request) -> web.Response:
        body = await _json_object(request, allow_empty=True)
        if isinstance(body, web.Response):
            return body
        if "from" not in body:
            return _error(400, "BadRequest", '"from" is required: an E.164 number, or null for a withheld number')
        caller, callee = body["from"], body.get("to", DEFAULT_CALLEE)
        for name, value in (("from", caller), ("to", callee)):
            if value is not None and (not isinstance(value, str) or not _E164.match(value)):
                return _error(400, "BadRequest", f'"{name}" must be an E.164 number like "+15555550100"')
        call = EmulatedCall(str(uuid.uuid4()), caller, callee, str(body.get("display_name") or ""))
        call.event = event_grid_event(
            "Microsoft.Communication.IncomingCall",
            f"/caller/{'4:' + caller if caller else '4:anonymous'}/recipient/4:{callee}",
            {
                "to": _phone(callee),
                "from": _phone(caller) if caller else {"kind": "unknown", "rawId": "4:anonymous"},
                "callerDisplayName": call.display_name,
                "incomingCallContext": call.context,
                "correlationId": call.correlation_id,
                "serverCallId": call.server_call_id,
            },
        )
        self._remember(call)
        self._spawn(call, self._ring_out(call))
        if body.get("deliver") is False:  # the caller delivers it (redeliveries, a storm): only ring and return it
            return web.json_response({**call.summary(), "event_id": call.event["id"], "event": call.event}, status=201)
        status = await self._deliver(call, call.event)
        if not 200 <= status < 300:
            return web.json_response(
                {**call.summary(), "error": self._delivery_error(status)}, status=502 if status == 0 else 201
            )
        return web.json_response({**call.summary(), "event_id": call.event["id"]}, status=201)

    async def redeliver(self, request: web.Request) -> web.Response:
        call = self._call(request)
        body = await _json_object(request, allow_empty=True)
        if isinstance(body, web.Response):
            return body
        event = call.event if body.get("same_event", True) else {**call.event, "id": str(uuid.uuid4())}
        status = await self._deliver(call, event)
        return web.json_response({"event_id": event["id"], "status": status})

    async def set_redelivery(self, request: web.Request) -> web.Response:
        """`{"rate": 0.0-1.0, "seed": 7}`: from now on this share of callbacks is posted twice (seeded, to repeat)."""
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        rate, seed = body.get("rate"), body.get("seed")
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1 or (
                seed is not None and (not isinstance(seed, int) or isinstance(seed, bool))):
            return _error(400, "BadRequest", 'send {"rate": 0.0 to 1.0} and optionally an integer "seed"')
        self.redelivery = float(rate)
        if seed is not None:
            self.random.seed(seed)
        return web.json_response({"rate": self.redelivery, "seed": seed})

    async def list_calls(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": [c.summary() for c in self.calls.values()]})

    async def show_call(self, request: web.Request) -> web.Response:
        return web.json_response(self._call(request).details())

    async def push_audio(self, request: web.Request) -> web.Response:
        call = self._call(request)
        if call.ended:
            return _error(409, "CallEnded", f"the call has {call.state}")
        call.audio.queue_caller_audio(await request.read())
        return web.json_response(call.audio.summary())

    async def press_keys(self, request: web.Request) -> web.Response:
        """`{"keys": "123456#"}`: the caller presses these keys, one after another."""
        call = self._call(request)
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        keys = body.get("keys")
        if problem := _keys_problem(call, keys):
            status, message = problem
            return _error(status, "BadRequest" if status == 400 else "Conflict", message)
        call.audio.press_keys(str(keys))
        return web.json_response(call.audio.summary())

    async def read_audio(self, request: web.Request) -> web.Response:
        call = self._call(request)
        which = request.match_info["which"]
        if which not in ("received", "played"):
            return _error(404, "NotFound", "audio is /received (all the app sent) or /played (what the caller heard)")
        pcm = bytes(call.audio.received if which == "received" else call.audio.played)
        return web.Response(body=pcm, content_type="application/octet-stream",
                            headers={"X-Sample-Rate": str(call.audio.sample_rate)})

    async def caller_hangs_up(self, request: web.Request) -> web.Response:
        call = self._call(request)
        if not call.ended:
            await self._end(call, "disconnected")
        return web.json_response(call.summary())

    async def phone_socket(self, request: web.Request) -> web.WebSocketResponse:
        """The caller's handset: binary in = caller PCM, binary out = what the caller hears; JSON events both ways."""
        call = self._call(request)
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=8 * 1024 * 1024)
        await ws.prepare(request)
        call.listeners.add(ws)
        try:
            await ws.send_json({"kind": "state", **call.summary(), "sample_rate": call.audio.sample_rate})
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    call.audio.queue_caller_audio(message.data)
                elif message.type == aiohttp.WSMsgType.TEXT:
                    try:
                        command = json.loads(message.data)
                    except ValueError:
                        continue
                    if not isinstance(command, dict):
                        continue
                    if command.get("kind") == "hangup" and not call.ended:
                        await self._end(call, "disconnected")
                    elif command.get("kind") == "keys":
                        if problem := _keys_problem(call, command.get("keys")):
                            await _send(ws, json.dumps({"kind": "KeysRefused", "reason": problem[1]}))
                        else:
                            call.audio.press_keys(str(command["keys"]))
        finally:
            call.listeners.discard(ws)
        return ws

    # The Call Automation API (HMAC-checked by the emulator) ----------------------------------------------------

    async def answer(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        call = next((c for c in self.calls.values() if c.context == body.get("incomingCallContext")), None)
        if call is None:
            return _error(400, "BadRequest", "incomingCallContext is not a call ringing on this resource")
        call.actions.append({"op": "answer", "body": body, "at": now_iso()})
        repeat = request.headers.get("Repeatability-Request-ID")
        if call.state == "connected" and repeat and repeat == call.answer_request_id:
            return web.json_response(call.properties())  # the SDK retrying the same request: same answer
        if call.state != "ringing":
            return _error(400, "BadRequest", f"the call cannot be answered: it is {call.state}")
        callback = body.get("callbackUri")
        if not isinstance(callback, str) or not callback.startswith(("http://", "https://")):
            return _error(400, "BadRequest", "callbackUri must be an http(s) URL")
        media = body.get("mediaStreamingOptions")
        if media is not None:
            problem = _media_problem(media)
            if problem:
                return _error(400, "BadRequest", problem)
            call.audio.sample_rate = SAMPLE_RATES[str(media.get("audioFormat", "pcm16KMono")).lower()]
        call.answer, call.callback_url, call.state = body, callback, "connected"
        call.answer_request_id = repeat
        log.info("call %s answered; callbacks to %s", call.correlation_id, callback.split("?")[0])
        self._spawn(call, self._after_answer(call))
        return web.json_response(call.properties())

    async def create_call(self, request: web.Request) -> web.Response:
        """CreateCall: validate as ACS does, answer 201 with the connecting call, then ring its target."""
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        repeat = request.headers.get("Repeatability-Request-ID")
        if repeat and (earlier := next((c for c in self.calls.values() if c.answer_request_id == repeat), None)):
            return web.json_response(earlier.properties(), status=201)  # the SDK retrying the same request
        problem = self._create_problem(body)
        if problem:
            return _error(400, "BadRequest", problem)
        target = _participant(body["targets"][0])
        source = (body.get("sourceCallerIdNumber") or {}).get("value")
        assert target is not None
        call = EmulatedCall(str(uuid.uuid4()), source, target, str(body.get("sourceDisplayName") or ""),
                            direction="outbound")
        call.answer, call.callback_url, call.answer_request_id = body, body["callbackUri"], repeat
        media = body.get("mediaStreamingOptions")
        if media is not None:
            call.audio.sample_rate = SAMPLE_RATES[str(media.get("audioFormat", "pcm16KMono")).lower()]
        call.actions.append({"op": "createCall", "body": body, "at": now_iso()})
        self._remember(call)
        log.info("call %s placed to %s", call.correlation_id, redact.phone(target) if target.startswith("+") else target)
        self._spawn(call, self._dial(call))
        return web.json_response(call.properties(), status=201)

    def _create_problem(self, body: dict[str, Any]) -> str | None:
        targets = body.get("targets")
        if not isinstance(targets, list) or not targets:
            return "targets is required: the participant to call"
        if len(targets) > 1:
            return "the emulator places calls to one target at a time"
        target = _participant(targets[0])
        if target is None:
            return "targets[0] must be a phone number or an ACS user"
        callback = body.get("callbackUri")
        if not isinstance(callback, str) or not callback.startswith(("http://", "https://")):
            return "callbackUri must be an http(s) URL"
        source = body.get("sourceCallerIdNumber")
        if target.startswith("+"):
            value = source.get("value") if isinstance(source, dict) else None
            if not isinstance(value, str) or not _E164.match(value):
                return "sourceCallerIdNumber is required to call a phone number: a number of this resource"
            if value not in self.source_numbers:
                return f"sourceCallerIdNumber {value} is not a number of this resource"
        media = body.get("mediaStreamingOptions")
        return _media_problem(media) if media is not None else None

    async def _dial(self, call: EmulatedCall) -> None:
        """Ring the target: a registered phone, else a persona; then connect, or tell the app it did not."""
        persona = self.personas.get(call.callee)
        if self.phones.listeners.get(call.callee):
            ring = Transfer(call.correlation_id, call.caller, call.callee, {}, {}, None, placed=True)
            outcome = await self.phones.ring(ring)
            outcome = {MISSED: NO_ANSWER, CANCELLED: NO_ANSWER}.get(outcome, outcome)
        elif persona is not None:
            await asyncio.sleep(persona.ring_seconds if persona.answers != BUSY else 0.2)
            outcome = ANSWERED if persona.answers not in (BUSY, NO_ANSWER) else persona.answers
        else:  # nobody on this number picks up
            await asyncio.sleep(RING_SECONDS)
            outcome = NO_ANSWER
        if call.state != "ringing":
            return  # the app hung up while it rang
        if outcome != ANSWERED:
            call.state = "busy" if outcome == BUSY else "missed"
            log.info("call %s was not answered: %s", call.correlation_id, outcome)
            await self._callback(call, "CreateCallFailed", call.answer.get("operationContext") if call.answer else None,
                                 result=_NOT_CONNECTED[outcome])
            await self._notify(call, {"kind": "state", **call.summary()})
            await self._close_listeners(call)
            return
        call.state = "connected"
        await self._after_answer(call)
        if persona is not None and not self.phones.listeners.get(call.callee):
            call.audio.queue_caller_audio(await self.personas.audio(persona, call.audio.sample_rate))

    async def get_call(self, request: web.Request) -> web.Response:
        call, op = self._target(request)
        if call is None or op:
            return _error(404, "NotFound", "no such call connection")
        return web.json_response(call.properties())

    async def hang_up_self(self, request: web.Request) -> web.Response:
        call, op = self._target(request)
        if call is None or op or call.ended:
            return _error(404, "NotFound", "no such call connection")
        call.actions.append({"op": "hangup", "body": None, "at": now_iso()})
        await self._end(call, "disconnected")  # a 1:1 call ends when either side leaves
        return web.Response(status=204)

    async def call_action(self, request: web.Request) -> web.Response:
        call, op = self._target(request)
        if call is None or call.ended:
            return _error(404, "NotFound", "no such call connection, or the call has ended")
        body = await _json_object(request, allow_empty=True)
        if isinstance(body, web.Response):
            return body
        call.actions.append({"op": op, "body": body, "at": now_iso()})
        context = body.get("operationContext")
        if op == "terminate":
            await self._end(call, "disconnected")
            return web.Response(status=204)
        if op == "transferToParticipant":
            target = _participant(body.get("targetParticipant"))
            if target is None:
                return _error(400, "BadRequest", "targetParticipant must be a phone number or an ACS user")
            headers = _custom_context(body.get("customCallingContext"), target)
            if isinstance(headers, str):
                return _error(400, "BadRequest", headers)
            if any(t.call_id == call.correlation_id and t.state == "ringing" for t in self.phones.transfers.values()):
                return _error(400, "BadRequest", "a transfer of this call is already ringing")
            call.transfer_target = target
            call.custom_context = {"sipHeaders": headers[0], "voipHeaders": headers[1]}
            transfer = Transfer(call.correlation_id, call.caller, target, *headers, context)
            self._spawn(call, self._transfer(call, transfer))
            return web.json_response({"operationContext": context}, status=202)
        if op == "play":
            self._spawn(call, self._callback_sequence(call, ["PlayStarted", "PlayCompleted"], context))
            return web.Response(status=202)
        if op == "startMediaStreaming":
            self._spawn(call, self._start_media(call, context))
            return web.Response(status=202)
        if op == "stopMediaStreaming":
            self._spawn(call, self._stop_media(call, context))
            return web.Response(status=202)
        if op == "cancelAllMediaOperations":
            return web.Response(status=202)
        return _error(400, "BadRequest", f"the emulator does not implement {op or 'this action'!r}")

    # What the service does on its own ---------------------------------------------------------------------------

    async def _after_answer(self, call: EmulatedCall) -> None:
        """CallConnected and ParticipantsUpdated together, in either order, while the media stream starts, as ACS
        posts them: the app must not depend on which lands first."""
        participants = {"participants": [{"identifier": _identifier(p) if p else {"kind": "unknown", "rawId": "4:anonymous"},
                                          "isMuted": False, "isOnHold": False} for p in (call.caller, call.callee)],
                        "sequenceNumber": 1}
        steps = [self._callback(call, "CallConnected"), self._callback(call, "ParticipantsUpdated", extra=participants)]
        self.random.shuffle(steps)
        media = (call.answer or {}).get("mediaStreamingOptions") or {}
        if media.get("startMediaStreaming"):
            steps.append(self._start_media(call, None))
        await asyncio.gather(*steps)

    async def _start_media(self, call: EmulatedCall, context: str | None) -> None:
        media = (call.answer or {}).get("mediaStreamingOptions")
        if not media or call.ended or (call.media is not None and call.media.state == "streaming"):
            return
        leg = MediaLeg(
            self.session, media["transportUrl"], call.audio, lambda what, detail: self._on_media(call, what, detail),
            subscription_id=call.connection_id,
            participant_raw_id=None if media.get("audioChannelType") == "mixed" else f"4:{call.caller}",
            dtmf=media.get("enableDtmfTones") is True,
        )
        call.media = leg
        if await leg.start():
            await self._notify(call, {"kind": "MediaStreamingStarted"})
            await self._callback(call, "MediaStreamingStarted", context, media_status=STARTED)
        else:
            await self._callback(call, "MediaStreamingFailed", context,
                                 media_status=("mediaStreamingFailed", "streamConnectionUnsuccessful"),
                                 result=(400, 8581, "Could not connect to the media streaming transport URL."))

    async def _stop_media(self, call: EmulatedCall, context: str | None) -> None:
        if call.media is not None and call.media.state == "streaming":
            await call.media.stop()
            await self._callback(call, "MediaStreamingStopped", context, media_status=STOPPED)

    async def _on_media(self, call: EmulatedCall, what: str, detail: Any) -> None:
        if what == "played":
            for ws in list(call.listeners):
                await _send(ws, bytes(detail))
        elif what == "StopAudio":
            await self._notify(call, {"kind": "StopAudio"})
        elif what == "failed" and not call.ended:
            log.warning("call %s: the app closed the media stream during the call", call.correlation_id)
            self._spawn(call, self._callback(
                call, "MediaStreamingFailed", None, media_status=("mediaStreamingFailed", str(detail)),
                result=(500, 8582, "The media streaming connection was interrupted."),
            ))

    async def _transfer(self, call: EmulatedCall, transfer: Transfer) -> None:
        """Ring the person; on an answer our connection ends as ACS ends it, otherwise the call goes on."""
        await self._notify(call, {"kind": "TransferRinging", "target": transfer.target})
        outcome = await self.phones.ring(transfer)
        if outcome == CANCELLED or call.ended:
            return  # the caller hung up while it rang: `_end` told the app
        context, target = transfer.operation_context, transfer.target
        if outcome == ANSWERED or (outcome == UNATTENDED and not target.startswith("8:")):
            await self._callback(call, "CallTransferAccepted", context, extra={
                "transferTarget": _identifier(target), "transferee": _phone(call.caller) if call.caller else None,
            })
            await self._notify(call, {"kind": "CallTransferred", "target": target})
            await self._end(call, "transferred")
            return
        log.info("call %s: the transfer to %s failed (%s)", call.correlation_id, target, outcome)
        await self._callback(call, "CallTransferFailed", context, result=_TRANSFER_FAILED[outcome],
                             extra={"transferTarget": _identifier(target)})
        await self._notify(call, {"kind": "TransferFailed", "target": target, "reason": outcome})

    async def _ring_out(self, call: EmulatedCall) -> None:
        await asyncio.sleep(RING_SECONDS)
        if call.state == "ringing":
            call.state = "missed"
            log.warning("call %s from %s was not answered in %.0f s",
                        call.correlation_id, redact.phone(call.caller), RING_SECONDS)
            await self._notify(call, {"kind": "state", **call.summary()})
            await self._close_listeners(call)

    async def _end(self, call: EmulatedCall, state: str, *, notify_app: bool = True) -> None:
        """Stop the media (the socket closes, as ACS closes it) and tell the app and the handset the call is over."""
        if call.ended:  # already over: only make sure the media socket is closed
            if call.media is not None:
                await call.media.stop()
            return
        was_connected = call.state == "connected"
        call.state = state
        ringing = await self.phones.cancel(call.correlation_id) if state == "disconnected" else None
        if ringing is not None and notify_app and was_connected:
            await self._callback(call, "CallTransferFailed", ringing.operation_context, result=_TRANSFER_FAILED[CANCELLED],
                                 extra={"transferTarget": _identifier(ringing.target)})
        if call.media is not None and call.media.state == "streaming":
            await call.media.stop()
            if notify_app and was_connected:
                await self._callback(call, "MediaStreamingStopped", media_status=STOPPED)
        if notify_app and was_connected:
            await self._callback(call, "CallDisconnected")
        await self._notify(call, {"kind": "CallDisconnected", "state": state})
        await self._close_listeners(call)

    async def _callback_sequence(self, call: EmulatedCall, types: list[str], context: str | None) -> None:
        for event_type in types:
            await self._callback(call, event_type, context)

    async def _callback(
        self,
        call: EmulatedCall,
        event_type: str,
        context: str | None = None,
        *,
        media_status: tuple[str, str] | None = None,
        result: tuple[int, int, str] = (200, 0, "Action completed successfully."),
        extra: dict[str, Any] | None = None,
    ) -> int:
        """POST one CloudEvent to the app's callback URL (now and then twice); returns the first status (0:
        unreachable)."""
        data: dict[str, Any] = {
            "version": "2026-03-12",
            "callConnectionId": call.connection_id,
            "serverCallId": call.server_call_id,
            "correlationId": call.correlation_id,
            "resultInformation": {"code": result[0], "subCode": result[1], "message": result[2]},
            "publicEventType": f"Microsoft.Communication.{event_type}",
        }
        if context:
            data["operationContext"] = context
        if media_status:
            status, details = media_status
            data["mediaStreamingUpdate"] = {
                "contentType": "Audio", "mediaStreamingStatus": status, "mediaStreamingStatusDetails": details,
            }
        data.update(extra or {})
        source = f"calling/callConnections/{call.connection_id}"
        event = {
            "id": str(uuid.uuid4()), "source": source, "type": f"Microsoft.Communication.{event_type}",
            "specversion": "1.0", "time": now_iso(), "datacontenttype": "application/json", "subject": source,
            "data": data,
        }
        again = self.random.random() < self.redelivery
        status = await self._post_callback(call, event)
        posted = {"type": event_type, "id": event["id"], "status": status, "at": now_iso(), "deliveries": 1}
        call.callbacks.append(posted)
        if again:  # a retry of a delivery that did arrive: the same event, a moment later
            self._spawn(call, self._redeliver_callback(call, event, posted))
        return status

    async def _redeliver_callback(self, call: EmulatedCall, event: dict[str, Any], posted: dict[str, Any]) -> None:
        await asyncio.sleep(self.random.uniform(0, REDELIVERY_DELAY))
        posted["redelivery_status"] = await self._post_callback(call, event)
        posted["deliveries"] += 1

    async def _post_callback(self, call: EmulatedCall, event: dict[str, Any]) -> int:
        """One POST of one event, concurrently with any other; the app's status, 0 when it cannot be reached."""
        headers = {"Authorization": self.signer.authorization()} if self.signer is not None else None
        try:
            return await post_callbacks(self.session, call.callback_url, [event], headers)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("call %s: could not post %s to the app: %s", call.correlation_id, event["type"], exc)
            return 0

    # Helpers ----------------------------------------------------------------------------------------------------

    async def _deliver(self, call: EmulatedCall, event: dict[str, Any]) -> int:
        try:
            status = await post_event_grid(self.session, self.functions_url, INCOMING_CALL_FUNCTION, [event])
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("could not deliver IncomingCall to %s: %s", self.functions_url, exc)
            status = 0
        call.deliveries.append({"event_id": event["id"], "status": status, "at": now_iso()})
        return status

    def _delivery_error(self, status: int) -> str:
        if status == 0:
            return f"the Functions host at {self.functions_url} is not reachable: is `make run` up?"
        return f"the Functions host answered {status} to the IncomingCall event (see its log)"

    def _remember(self, call: EmulatedCall) -> None:
        self.calls[call.correlation_id] = call
        while len(self.calls) > MAX_CALLS:
            _, old = self.calls.popitem(last=False)
            for task in old.tasks:
                task.cancel()

    def _call(self, request: web.Request) -> EmulatedCall:
        call = self.calls.get(request.match_info["id"])
        if call is None:
            body = {"error": {"code": "NotFound", "message": "no such call"}}
            raise web.HTTPNotFound(text=json.dumps(body), content_type="application/json")
        return call

    def _target(self, request: web.Request) -> tuple[EmulatedCall | None, str]:
        """`{callConnectionId}` or `{callConnectionId}:{action}` from the path."""
        connection_id, _, op = request.match_info["target"].partition(":")
        call = next((c for c in self.calls.values() if c.connection_id == connection_id), None)
        return call, op

    def _spawn(self, call: EmulatedCall, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        call.tasks.add(task)
        task.add_done_callback(call.tasks.discard)
        task.add_done_callback(_log_failure)

    async def _notify(self, call: EmulatedCall, message: dict[str, Any]) -> None:
        for ws in list(call.listeners):
            await _send(ws, json.dumps(message))

    async def _close_listeners(self, call: EmulatedCall) -> None:
        for ws in list(call.listeners):
            if not ws.closed:
                await ws.close()


def _participant(identifier: Any) -> str | None:
    """The phone number or ACS user id a CommunicationIdentifierModel names, or None."""
    if not isinstance(identifier, dict):
        return None
    phone = identifier.get("phoneNumber")
    user = identifier.get("communicationUser")
    raw = str(identifier.get("rawId") or "")
    value = (phone.get("value") if isinstance(phone, dict) else None) or (
        user.get("id") if isinstance(user, dict) else None) or (raw[2:] if raw.startswith("4:") else raw)
    if isinstance(value, str) and (_E164.match(value) or _ACS_USER.match(value)):
        return value
    return None


def _custom_context(context: Any, target: str) -> tuple[dict[str, str], dict[str, str]] | str:
    """The (SIP, VoIP) headers of a customCallingContext, or what is wrong with them."""
    if context is None:
        return {}, {}
    if not isinstance(context, dict):
        return "customCallingContext must be an object"
    sip, voip = context.get("sipHeaders") or {}, context.get("voipHeaders") or {}
    if not isinstance(sip, dict) or not isinstance(voip, dict):
        return "customCallingContext.sipHeaders and voipHeaders must be objects"
    if sip and target.startswith("8:"):
        return "SIP headers reach phone numbers only: send voipHeaders to an ACS user"
    if len(sip) > 5:
        return "at most 5 custom SIP headers"
    for name, value in sip.items():
        if not _SIP_NAME.match(name) or _RESERVED_SIP.match(name):
            return f"SIP header {name!r}: names start with X-MS-Custom- (or X-) and are at most 64 characters"
        if not isinstance(value, str) or not _SIP_VALUE.match(value):
            return f"SIP header {name}: at most 256 letters, digits and =;.!%*_+~- characters"
    for name, value in voip.items():
        if not isinstance(name, str) or not 0 < len(name) <= 64 or not isinstance(value, str) or len(value) > 1024:
            return f"VoIP header {name!r}: names of at most 64 characters, values of at most 1024"
    return {str(k): str(v) for k, v in sip.items()}, {str(k): str(v) for k, v in voip.items()}


def _keys_problem(call: EmulatedCall, keys: Any) -> tuple[int, str] | None:
    """Why the caller cannot press `keys` on this call now (an HTTP status and what to say), or None."""
    if not isinstance(keys, str) or not keys or len(keys) > 64 or any(key not in KEYS for key in keys):
        return 400, '"keys" must be 1 to 64 keys of a phone keypad: 0-9, *, # (and A-D)'
    if call.ended:
        return 409, f"the call has {call.state}"
    media = (call.answer or {}).get("mediaStreamingOptions") or {}
    if media.get("enableDtmfTones") is not True:
        return 409, "the app did not answer with DTMF tones on (enableDtmfTones): ACS would not stream the keys"
    return None


def _media_problem(media: Any) -> str | None:
    if not isinstance(media, dict):
        return "mediaStreamingOptions must be an object"
    url = media.get("transportUrl")
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
        return "mediaStreamingOptions.transportUrl must be a ws:// or wss:// URL"
    if media.get("transportType") != "websocket" or media.get("contentType") != "audio":
        return "mediaStreamingOptions must stream audio over websocket"
    if media.get("audioChannelType") not in ("mixed", "unmixed"):
        return "mediaStreamingOptions.audioChannelType must be mixed or unmixed"
    if str(media.get("audioFormat", "pcm16KMono")).lower() not in SAMPLE_RATES:
        return "mediaStreamingOptions.audioFormat must be pcm16KMono or pcm24KMono"
    return None


async def _json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any] | web.Response:
    raw = await request.read()
    if not raw.strip() and allow_empty:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, "BadRequest", "the body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "BadRequest", "the body must be a JSON object")
    return body


async def _send(ws: web.WebSocketResponse, payload: str | bytes) -> None:
    if ws.closed:
        return
    try:
        if isinstance(payload, bytes):
            await ws.send_bytes(payload)
        else:
            await ws.send_str(payload)
    except (ConnectionResetError, RuntimeError):
        pass  # the handset went away; the call goes on


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("emulator task failed", exc_info=task.exception())
