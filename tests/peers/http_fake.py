"""What the scripted HTTP fakes at a network boundary share: a loopback aiohttp server, a queue of scripted answers
(text, tool calls, an HTTP error, a dropped connection, or a stall) and server-sent events.

tests/peers/openai_server.py (OpenAI chat completions) and tests/peers/foundry_server.py (a Foundry project) stand
in for services that cannot run here; each serves its own wire format on top of this. A stall holds its request (or
its stream, part way) until the server stops, so a client's timeout is what ends it.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterable, AsyncIterator, TypeVar

from aiohttp import web


@dataclass
class Step:
    """One scripted answer."""

    kind: str  # "stream", "fail", "drop" or "stall"
    text: str = ""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, raw JSON arguments)
    status: int = 500
    stall_after: int | None = None  # stream this many words of the text, then stall
    delay: float = 0.0  # seconds before the answer starts


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error in the shape OpenAI (and Foundry's OpenAI routes) send."""
    body = {"error": {"message": message, "type": code, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


class ScriptedServer:
    """A loopback aiohttp server answering from a script; subclasses add their routes in `_routes`."""

    def __init__(self) -> None:
        self._script: deque[Step] = deque()
        self._release = asyncio.Event()  # stalled handlers wait on this until the server stops
        self._runner: web.AppRunner | None = None
        self.url = ""

    # Scripting ----------------------------------------------------------------------------------------------------

    def reply_text(self, text: str, stall_after: int | None = None, *, delay: float = 0.0) -> None:
        """Stream `text` a word at a time; with `stall_after`, stop after that many words and never finish; with
        `delay`, think that many seconds before answering."""
        self._script.append(Step("stream", text=text, stall_after=stall_after, delay=delay))

    def reply_tool_calls(self, *calls: tuple[str, dict[str, Any] | str], text: str = "") -> None:
        """Stream optional `text`, then tool calls `(name, arguments)`; a str is sent as raw (maybe broken) JSON."""
        raw = [(name, args if isinstance(args, str) else json.dumps(args)) for name, args in calls]
        self._script.append(Step("stream", text=text, tool_calls=raw))

    def fail(self, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests with an HTTP error (the SDK retries 429 and 5xx)."""
        self._script.extend(Step("fail", status=status) for _ in range(times))

    def drop(self, times: int = 1) -> None:
        """Close the connection on the next `times` requests without answering (a crashed or restarted endpoint)."""
        self._script.extend(Step("drop") for _ in range(times))

    def stall(self, times: int = 1) -> None:
        """Hold the next `times` requests without answering (until the test ends), so the client times out."""
        self._script.extend(Step("stall") for _ in range(times))

    def clear_script(self) -> None:
        """Forget responses scripted but not used (a client that gave up early sends fewer requests)."""
        self._script.clear()

    # Lifecycle ----------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        self._routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # Serving ------------------------------------------------------------------------------------------------------

    async def _next_step(self, request: web.Request, server: str) -> Step | web.StreamResponse:
        """The next scripted answer to stream; a scripted failure, drop or stall is answered here instead (the
        response returned), as is a request nothing was scripted for."""
        if not self._script:
            message = f"{server} test server: no response was scripted for this request"
            return error_response(400, "test_server", message)
        step = self._script.popleft()
        if step.kind == "fail":
            # retry-after-ms keeps the SDK's retries fast; the real service sends retry-after on 429.
            return error_response(step.status, "server_error", "scripted failure", {"retry-after-ms": "10"})
        if step.kind == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()  # never sent: the client sees the connection go
        if step.kind == "stall":
            await self._release.wait()
            return error_response(503, "server_error", "stalled")
        if step.delay:
            await asyncio.sleep(step.delay)
        return step

    async def _stream(self, request: web.Request,
                      frames: AsyncIterable[bytes | None]) -> tuple[web.StreamResponse, bool]:
        """Send `frames` as server-sent events; None is the scripted stall point (go quiet with the stream still
        open). Returns the response and whether the stream was sent to its end."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            async for frame in frames:
                if frame is None:
                    await self._release.wait()
                    return response, False
                await response.write(frame)
            await response.write_eof()
        except ConnectionResetError:
            return response, False  # the client gave up (a timeout test); nothing to finish
        return response, True


Server = TypeVar("Server", bound=ScriptedServer)


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    """`server` started on a free localhost port for the block, stopped after it."""
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
