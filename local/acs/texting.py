"""What the emulator's SMS and Advanced Messaging (WhatsApp) modules share: the driver surface and event delivery.

Both keep an outbox of what the app sent, take injected faults and unreachable numbers, build a customer's inbound
message as an Event Grid event and post it to the Functions host, and redeliver any event the host refuses the way
Event Grid retries. Only the send API and the events' shapes differ (sms.py, messages.py); each module gives its
paths and its Event Grid trigger to `TextingApi`:
  POST {inbound_path}          a customer's message → the received event, posted (answer: messageId, event, status;
                               "deliver": false only builds it; 502 while the host is not answering)
  GET  {outbox_path}           the outbox, newest last (?to=+1555... for one number)
  POST {outbox_path}/faults    {"status": 503, "count": 2}: the next sends fail with that status
  POST {outbox_path}/unreachable   {"phone": "+1555..."}: sends to it are accepted, then reported failed
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
from aiohttp import web

from local.acs.events import post_event_grid
from local.acs.repeatability import Repeats

#: Event Grid retries a failed delivery with backoff; locally the schedule is seconds, not minutes.
REDELIVERY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def error(status: int, code: str, message: str) -> web.Response:
    """An error the way ACS answers one."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@dataclass
class Fault:
    status: int
    count: int
    code: str
    message: str
    retry_after: float | None = None


class OutboxItem(Protocol):
    to: str

    def to_json(self) -> dict[str, Any]: ...


Item = TypeVar("Item", bound=OutboxItem)


class TextingApi(Generic[Item]):
    """The common half of an emulator module that texts customers (an `ApiModule` once a subclass adds its send)."""

    name: str  # the key of its state in the emulator, and its logger's last part
    function: str  # the Event Grid trigger its events go to
    send_path: str  # its send API, HMAC-checked like every ACS route
    inbound_path: str
    outbox_path: str

    def __init__(self) -> None:
        self.functions_url = ""
        self.outbox: list[Item] = []
        self.unreachable: set[str] = set()  # E.164 numbers a send to is accepted, then reported failed
        # Repeatability id → the first answer (a whole send's, or one SMS recipient's), for five minutes.
        self._repeats = Repeats()
        self._faults: list[Fault] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._log = logging.getLogger(f"local.acs.{self.name}")

    def install(self, app: web.Application, emulator: Any) -> None:
        self.functions_url = emulator.functions_url
        emulator.state[self.name] = self
        app.router.add_post(self.send_path, self.send)
        app.router.add_post(self.inbound_path, self.inbound)
        app.router.add_get(self.outbox_path, self.list_outbox)
        app.router.add_post(f"{self.outbox_path}/faults", self.add_fault)
        app.router.add_post(f"{self.outbox_path}/unreachable", self.add_unreachable)
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

    async def send(self, request: web.Request) -> web.Response:
        """The API's send, as the service answers it."""
        raise NotImplementedError

    def _fail(self, fault: Fault) -> web.Response:
        """Answer a send with the first queued fault, using it up."""
        fault.count -= 1
        if fault.count <= 0:
            self._faults.pop(0)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return web.json_response({"error": {"code": fault.code, "message": fault.message}}, status=fault.status,
                                 headers=headers)

    # The driver ------------------------------------------------------------------------------------------------

    def _received(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The received event for a customer's message, and what the answer says of it (its ids); ValueError says
        what is wrong with the body."""
        raise NotImplementedError

    async def inbound(self, request: web.Request) -> web.Response:
        """A customer writes: build the event as ACS would and deliver it (or only build it, for the caller)."""
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return error(400, "BadRequest", "the body is not JSON")
        if not isinstance(body, dict):
            return error(400, "BadRequest", "the body must be a JSON object")
        try:
            event, ids = self._received(body)
        except ValueError as exc:
            return error(400, "BadRequest", str(exc))
        if body.get("deliver") is False:  # the caller delivers it (a batch, a duplicate): only build it
            return web.json_response({**ids, "event": event, "status": None})
        status = await self._post(event)
        answer = {**ids, "event": event, "status": status}
        if 200 <= status < 300:
            return web.json_response(answer)
        self._spawn(self._redeliver(event))
        if status == 0:
            return web.json_response({**answer, "error": f"the Functions host at {self.functions_url} is not "
                                                         "answering; retrying like Event Grid"}, status=502)
        return web.json_response({**answer, "redelivering": True})

    async def list_outbox(self, request: web.Request) -> web.Response:
        to = request.query.get("to")
        return web.json_response([item.to_json() for item in self.outbox if to is None or item.to == to])

    async def add_fault(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            fault = Fault(int(body["status"]), int(body.get("count", 1)), str(body.get("code") or "InjectedFault"),
                          str(body.get("message") or f"a fault injected through {self.outbox_path}/faults"),
                          float(body["retryAfter"]) if body.get("retryAfter") is not None else None)
        except (ValueError, KeyError, TypeError):
            return error(400, "BadRequest", 'send {"status": 503, "count": 2} (optional "code", "message", '
                                            '"retryAfter")')
        if not 400 <= fault.status <= 599 or fault.count < 1:
            return error(400, "BadRequest", "status must be 4xx or 5xx and count at least 1")
        self._faults.append(fault)
        return web.json_response({"queued": [f.__dict__ for f in self._faults]})

    async def add_unreachable(self, request: web.Request) -> web.Response:
        try:
            phone = json.loads(await request.read()).get("phone")
        except (ValueError, AttributeError):
            phone = None
        if not isinstance(phone, str) or not E164.match(phone):
            return error(400, "BadRequest", 'send {"phone": "+15555550100"}')
        self.unreachable.add(phone)
        return web.json_response({"unreachable": sorted(self.unreachable)})

    # Event delivery --------------------------------------------------------------------------------------------

    async def _post(self, event: dict[str, Any]) -> int:
        """One delivery attempt; 0 when the host cannot be reached."""
        assert self._session is not None, "the emulator app has not started"
        try:
            return await post_event_grid(self._session, self.functions_url, self.function, [event])
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
        self._log.warning("gave up delivering %s %s after %d retries", event["eventType"], event["id"],
                          len(REDELIVERY_DELAYS))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
