"""A scripted stand-in for the media gateway: a real WebSocket server that records what ACS (the emulator) streams.

It speaks only the wire protocol (docs/protocols.md, "Media streaming"): it checks the media token the way the gateway
must, records AudioMetadata and AudioData per call, and can send audio or StopAudio back. Tests that need the real
gateway use media_gateway itself; these tests are about the call plumbing around it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from shared.errors import Unauthorized
from shared.tokens import TokenSigner
from tests.peers import free_port


@dataclass
class MediaConnection:
    claims: dict[str, Any]
    ws: web.WebSocketResponse
    messages: list[dict[str, Any]] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def audio_frames(self) -> list[dict[str, Any]]:
        return [m["audioData"] for m in self.messages if m.get("kind") == "AudioData"]

    async def send_audio(self, pcm: bytes) -> None:
        await self.ws.send_str(json.dumps({"Kind": "AudioData", "AudioData": {"Data": base64.b64encode(pcm).decode()}}))

    async def stop_audio(self) -> None:
        await self.ws.send_str(json.dumps({"Kind": "StopAudio", "AudioData": None, "StopAudio": {}}))


class FakeGateway:
    def __init__(self, secret: bytes) -> None:
        self.signer = TokenSigner(secret)
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.connections: dict[str, MediaConnection] = {}  # by call id (the token's `call` claim)
        self.refused: list[str] = []
        self.refuse_all = False
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/media", self._media)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def connection(self, call_id: str, timeout: float = 10) -> MediaConnection:
        deadline = time.monotonic() + timeout
        while call_id not in self.connections:
            assert time.monotonic() < deadline, f"the emulator never opened the media socket for call {call_id}"
            await asyncio.sleep(0.02)
        return self.connections[call_id]

    async def _media(self, request: web.Request) -> web.StreamResponse:
        try:
            claims = self.signer.verify(request.query.get("token", ""), "media")
        except Unauthorized as exc:
            self.refused.append(str(exc))
            return web.json_response({"error": str(exc)}, status=401)
        if self.refuse_all:
            self.refused.append("refusing every call")
            return web.json_response({"error": "down for the test"}, status=503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connection = MediaConnection(claims, ws)
        self.connections[str(claims["call"])] = connection
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                connection.messages.append(json.loads(message.data))
                connection.frame_times.append(time.monotonic())
        connection.closed.set()
        return ws
