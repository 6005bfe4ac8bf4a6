"""An OpenAI-compatible chat completions server for tests: a fake at the network boundary.

The real Azure OpenAI or OpenAI service cannot run here, so tests drive the real `openai` SDK over HTTP against this
aiohttp server instead. It speaks the wire format the SDK parses: `POST /v1/chat/completions` (and the Azure path
`/openai/deployments/{deployment}/chat/completions?api-version=...`) answered with server-sent events, one
`chat.completion.chunk` per `data:` line and `data: [DONE]` at the end. Tool calls stream the way OpenAI streams
them: a first delta with index, id, type and function name and empty arguments, then argument fragments, then
`finish_reason: "tool_calls"`.

It is scripted, not clever: a test queues one response per expected request (text, tool calls, an HTTP error, a
dropped connection, or a stall), and every request body is recorded so the test can assert on the messages and tool
schemas it was sent.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import pytest_asyncio
from aiohttp import web


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body["messages"]

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.body.get("tools") or []

    def tool(self, name: str) -> dict[str, Any]:
        """The `function` object of the tool called `name`."""
        return next(t["function"] for t in self.tools if t["function"]["name"] == name)


@dataclass
class _Step:
    kind: str  # "stream", "fail", "drop" or "stall"
    text: str = ""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, raw JSON arguments)
    status: int = 500
    stall_after: int | None = None  # stream this many words of the text, then stall
    delay: float = 0.0  # seconds before the answer starts


class OpenAITestServer:
    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key  # when set, requests must carry it (Bearer or api-key header) or get a 401
        self.requests: list[RecordedRequest] = []
        self._script: deque[_Step] = deque()
        self._release = asyncio.Event()  # stalled handlers wait on this until the server stops
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def base_url(self) -> str:
        """The base URL for `AsyncOpenAI(base_url=...)` / OPENAI_BASE_URL; the server root is the Azure endpoint."""
        return f"{self.url}/v1"

    # Scripting ----------------------------------------------------------------------------------------------------

    def reply_text(self, text: str, stall_after: int | None = None, *, delay: float = 0.0) -> None:
        """Stream `text` a word at a time; with `stall_after`, stop after that many words and never finish; with
        `delay`, think that many seconds before answering."""
        self._script.append(_Step("stream", text=text, stall_after=stall_after, delay=delay))

    def reply_tool_calls(self, *calls: tuple[str, dict[str, Any] | str], text: str = "") -> None:
        """Stream optional `text`, then tool calls `(name, arguments)`; a str is sent as raw (maybe broken) JSON."""
        raw = [(name, args if isinstance(args, str) else json.dumps(args)) for name, args in calls]
        self._script.append(_Step("stream", text=text, tool_calls=raw))

    def fail(self, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests with an HTTP error (the SDK retries 429 and 5xx)."""
        self._script.extend(_Step("fail", status=status) for _ in range(times))

    def drop(self, times: int = 1) -> None:
        """Close the connection on the next `times` requests without answering (a crashed or restarted endpoint)."""
        self._script.extend(_Step("drop") for _ in range(times))

    def stall(self, times: int = 1) -> None:
        """Hold the next `times` requests without answering (until the test ends), so the client times out."""
        self._script.extend(_Step("stall") for _ in range(times))

    def clear_script(self) -> None:
        """Forget responses scripted but not used (a client that gave up early sends fewer requests)."""
        self._script.clear()

    # Lifecycle ----------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # Serving ------------------------------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.query), dict(request.headers), body))
        if self.api_key and self.api_key not in (
            request.headers.get("api-key"),
            request.headers.get("Authorization", "").removeprefix("Bearer "),
        ):
            return _error(401, "invalid_api_key", "Incorrect API key provided.")
        if not self._script:
            return _error(400, "test_server", "openai test server: no response was scripted for this request")
        step = self._script.popleft()
        if step.kind == "fail":
            # retry-after-ms keeps the SDK's retries fast; the real service sends retry-after on 429.
            return _error(step.status, "server_error", "scripted failure", {"retry-after-ms": "10"})
        if step.kind == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()  # never sent: the client sees the connection go
        if step.kind == "stall":
            await self._release.wait()
            return _error(503, "server_error", "stalled")
        if step.delay:
            await asyncio.sleep(step.delay)
        if not body.get("stream"):
            return _error(400, "test_server", "openai test server: only streaming requests are supported")
        return await self._stream(request, step, body.get("model", ""))

    async def _stream(self, request: web.Request, step: _Step, model: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        azure = request.path.startswith("/openai/")
        try:
            for chunk in _chunks(step, model, azure):
                if chunk is None:  # the scripted stall point: go quiet with the stream still open
                    await self._release.wait()
                    return response
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client gave up (a timeout test); nothing to finish
        return response


def _chunks(step: _Step, model: str, azure: bool) -> list[dict[str, Any] | None]:
    """The chunk sequence OpenAI would send for one scripted answer; None marks where to stall."""
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        head = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model}
        return {**head, "choices": [choice]}

    chunks: list[dict[str, Any] | None] = []
    if azure:  # Azure opens with a prompt-filter chunk that has no choices
        chunks.append({"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": []})
    chunks.append(chunk({"role": "assistant", "content": ""}))
    words = re.findall(r"\S+\s*", step.text)
    if step.stall_after is not None:
        return chunks + [chunk({"content": word}) for word in words[: step.stall_after]] + [None]
    chunks += [chunk({"content": word}) for word in words]
    for index, (name, arguments) in enumerate(step.tool_calls):
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        opening = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        chunks.append(chunk({"tool_calls": [opening]}))
        for start in range(0, len(arguments), 7):  # fragments split mid-token, as the real service does
            fragment = {"index": index, "function": {"arguments": arguments[start : start + 7]}}
            chunks.append(chunk({"tool_calls": [fragment]}))
    chunks.append(chunk({}, "tool_calls" if step.tool_calls else "stop"))
    return chunks


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": code, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


@pytest_asyncio.fixture
async def openai_server() -> AsyncIterator[OpenAITestServer]:
    """A fresh scripted OpenAI-compatible server on a free localhost port."""
    server = OpenAITestServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
