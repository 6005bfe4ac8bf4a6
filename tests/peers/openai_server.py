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

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

import pytest_asyncio
from aiohttp import web

from tests.peers.http_fake import ScriptedServer, Step, error_response, serving


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


class OpenAITestServer(ScriptedServer):
    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key  # when set, requests must carry it (Bearer or api-key header) or get a 401
        self.requests: list[RecordedRequest] = []

    @property
    def base_url(self) -> str:
        """The base URL for `AsyncOpenAI(base_url=...)` / OPENAI_BASE_URL; the server root is the Azure endpoint."""
        return f"{self.url}/v1"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.query), dict(request.headers), body))
        if self.api_key and self.api_key not in (
            request.headers.get("api-key"),
            request.headers.get("Authorization", "").removeprefix("Bearer "),
        ):
            return error_response(401, "invalid_api_key", "Incorrect API key provided.")
        step = await self._next_step(request, "openai")
        if not isinstance(step, Step):
            return step
        if not body.get("stream"):
            return error_response(400, "test_server", "openai test server: only streaming requests are supported")
        chunks = _chunks(step, body.get("model", ""), azure=request.path.startswith("/openai/"))
        response, _ = await self._stream(request, _sse(chunks))
        return response


async def _sse(chunks: list[dict[str, Any] | None]) -> AsyncIterator[bytes | None]:
    """Chat completion chunks as `data:` lines, `data: [DONE]` last; None (the stall point) passes through."""
    for chunk in chunks:
        yield None if chunk is None else f"data: {json.dumps(chunk)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _chunks(step: Step, model: str, azure: bool) -> list[dict[str, Any] | None]:
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


@pytest_asyncio.fixture
async def openai_server() -> AsyncIterator[OpenAITestServer]:
    """A fresh scripted OpenAI-compatible server on a free localhost port."""
    async with serving(OpenAITestServer()) as server:
        yield server
