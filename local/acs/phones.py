"""People's phones in the ACS emulator: who answers a transferred call, and what they get with it.

A transfer (`POST /calling/callConnections/{id}:transferToParticipant`) rings its target, a phone number or an ACS
user. Whoever registered to answer that target gets the ringing call with its custom context, as the IncomingCall
their phone or calling app would get: `{"kind": "ringing", "transfer_id", "call_id", "from", "target",
"customContext": {"sipHeaders": {...}, "voipHeaders": {...}}}`. They answer or decline; nobody doing either within
the ring time is a missed call.

Registering is a WebSocket, `GET /_emulator/phones/{target}` (`python -m local.phone --answer-transfers` holds one):
the emulator sends `ringing` (and `cancelled` when the caller hangs up first), the phone sends `{"kind": "answer",
"transfer_id"}` or `{"kind": "decline", "transfer_id"}`. Tests can do the same over HTTP: `GET /_emulator/transfers`,
`POST /_emulator/transfers/{id}/answer` or `/decline`.

A call the app places (`create_call`) rings a registered phone the same way, with `"placed": true`; the phone
answers it with the same message and then opens the call's handset socket (`/_emulator/calls/{call_id}/media`).

A target nobody registered for stands for the world outside: a phone number is answered (someone picks up, as the
team's line always did here), an ACS user is not signed in and the transfer fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from local.acs.events import now_iso

log = logging.getLogger("local.acs.phones")

#: How long a transferred call rings before it counts as missed.
TRANSFER_RING_SECONDS = 30.0
MAX_TRANSFERS = 200  # kept for inspection, oldest dropped first

ANSWERED, DECLINED, MISSED, CANCELLED = "answered", "declined", "missed", "cancelled"
#: Nobody registered for the target: see the module docstring.
UNATTENDED = "unattended"


@dataclass
class Transfer:
    """One transferred call ringing a person."""

    call_id: str  # the caller's call (correlation id)
    caller: str | None
    target: str  # "+15555550142" or "8:acs:..."
    sip_headers: dict[str, str]
    voip_headers: dict[str, str]
    operation_context: str | None
    placed: bool = False  # a call the app placed to this phone, not a transfer: it answers as the callee
    transfer_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: str = "ringing"  # ringing, answered, declined, missed, cancelled, unattended
    at: str = field(default_factory=now_iso)
    outcome: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def ringing(self) -> dict[str, Any]:
        """What the person's phone gets: the call and its custom context, as IncomingCall carries it."""
        return {
            "kind": "ringing", "transfer_id": self.transfer_id, "call_id": self.call_id, "from": self.caller,
            "target": self.target, "placed": self.placed,
            "customContext": {"sipHeaders": dict(self.sip_headers), "voipHeaders": dict(self.voip_headers)},
        }

    def summary(self) -> dict[str, Any]:
        return {**self.ringing(), "kind": "transfer", "state": self.state, "at": self.at,
                "operation_context": self.operation_context}

    def settle(self, outcome: str) -> bool:
        if self.outcome.done():
            return False
        self.state = outcome
        self.outcome.set_result(outcome)
        return True


class Phones:
    """The people's side of transfers: registered phones and the transfers ringing them."""

    def __init__(self, ring_seconds: float = TRANSFER_RING_SECONDS) -> None:
        self.ring_seconds = ring_seconds
        self.listeners: dict[str, set[web.WebSocketResponse]] = {}
        self.transfers: OrderedDict[str, Transfer] = OrderedDict()

    def install(self, app: web.Application) -> None:
        app.router.add_get("/_emulator/phones/{target}", self.phone_socket)
        app.router.add_get("/_emulator/transfers", self.list_transfers)
        app.router.add_post("/_emulator/transfers/{id}/{action}", self.act)

    async def ring(self, transfer: Transfer) -> str:
        """Ring the transfer's target until it is answered, declined, cancelled or missed; returns which."""
        self.transfers[transfer.transfer_id] = transfer
        while len(self.transfers) > MAX_TRANSFERS:
            self.transfers.popitem(last=False)
        phones = self.listeners.get(transfer.target, set())
        if not phones:
            transfer.settle(UNATTENDED)
            return UNATTENDED
        log.info("transfer of call %s rings %d phone(s) at %s", transfer.call_id, len(phones), transfer.target)
        for ws in list(phones):
            await _send(ws, transfer.ringing())
        try:
            return await asyncio.wait_for(asyncio.shield(transfer.outcome), self.ring_seconds)
        except asyncio.TimeoutError:
            transfer.settle(MISSED)
            await self._tell(transfer, {"kind": "missed", "transfer_id": transfer.transfer_id})
            return MISSED

    async def cancel(self, call_id: str) -> Transfer | None:
        """The caller hung up: stop the transfer ringing for them, if one is; returns it."""
        for transfer in self.transfers.values():
            if transfer.call_id == call_id and transfer.settle(CANCELLED):
                await self._tell(transfer, {"kind": "cancelled", "transfer_id": transfer.transfer_id})
                return transfer
        return None

    # The driver surface ---------------------------------------------------------------------------------------

    async def phone_socket(self, request: web.Request) -> web.WebSocketResponse:
        target = unquote(request.match_info["target"])
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.listeners.setdefault(target, set()).add(ws)
        log.info("a phone registered to answer transfers to %s", target)
        try:
            await ws.send_json({"kind": "registered", "target": target})
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    command = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(command, dict):
                    self._answer(str(command.get("transfer_id")), str(command.get("kind")))
        finally:
            self.listeners.get(target, set()).discard(ws)
        return ws

    async def list_transfers(self, request: web.Request) -> web.Response:
        return web.json_response({"transfers": [t.summary() for t in self.transfers.values()]})

    async def act(self, request: web.Request) -> web.Response:
        transfer = self.transfers.get(request.match_info["id"])
        action = request.match_info["action"]
        if transfer is None:
            return web.json_response({"error": {"code": "NotFound", "message": "no such transfer"}}, status=404)
        if action not in ("answer", "decline"):
            return web.json_response({"error": {"code": "NotFound", "message": "answer or decline"}}, status=404)
        if not self._answer(transfer.transfer_id, action):
            return web.json_response({"error": {"code": "Conflict", "message": f"the transfer is {transfer.state}"}},
                                     status=409)
        return web.json_response(transfer.summary())

    def _answer(self, transfer_id: str, kind: str) -> bool:
        transfer = self.transfers.get(transfer_id)
        if transfer is None or kind not in ("answer", "decline"):
            return False
        return transfer.settle(ANSWERED if kind == "answer" else DECLINED)

    async def _tell(self, transfer: Transfer, message: dict[str, Any]) -> None:
        for ws in list(self.listeners.get(transfer.target, set())):
            await _send(ws, message)


async def _send(ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
    if ws.closed:
        return
    try:
        await ws.send_json(message)
    except (ConnectionResetError, RuntimeError):
        pass  # the phone went away; it misses the call
