"""A Foundry project stand-in for tests and bench/foundry.py: a fake at the network boundary.

Azure AI Foundry cannot run here, so the real `azure-ai-projects` and `openai` SDKs are pointed at this server (a
loopback project endpoint, `http://127.0.0.1:<port>/api/projects/test`). It serves the routes those SDKs call, as
logged from them against this server:

- `GET  {project}/agents/{name}?api-version=v1`, `POST {project}/agents/{name}/versions?api-version=v1` (agents)
- `POST {project}/openai/v1/conversations`, `POST|GET {project}/openai/v1/conversations/{id}/items` (Conversations;
  the list as the service returns it: message content as parts, `order` and `limit`)
- `POST {project}/openai/v1/responses` with `conversation`, `input`, `stream: true` and
  `agent_reference: {name, type}` (Responses), answered with Responses server-sent events

and keeps what a real project keeps: agent versions, and each conversation's items, to which a response adds its
input and its output. Like the service, it refuses a response for an agent that has no version (404), on a
conversation that does not exist (404), or while a function call in the conversation has no output (400).

Answers are scripted as with OpenAITestServer (`reply_text`, `reply_tool_calls`, `fail`, `drop`, `stall`), and each
response request is recorded with `seen`: the conversation's items as the model reads them. `unreachable = True`
drops every connection, as a project that cannot be reached; `False` brings it back. `latency` adds a delay
per route ("agents", "conversations", "items", "responses") to model a real project's round trips.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

import pytest_asyncio
from aiohttp import web

from tests.peers.http_fake import Step, error_response, serving
from tests.peers.openai_server import OpenAITestServer

PROJECT = "/api/projects/test"


@dataclass(frozen=True)
class ResponseRequest:
    agent: str
    conversation: str
    input: list[dict[str, Any]]
    seen: list[dict[str, Any]]  # the conversation's items with this input: what the model reads

    def texts(self, role: str) -> list[str]:
        return [_text(i) for i in self.seen if i.get("type", "message") == "message" and i.get("role") == role]


class FoundryTestServer(OpenAITestServer):
    def __init__(self) -> None:
        super().__init__()
        self.agents: dict[str, list[dict[str, Any]]] = {}  # name -> versions, oldest first
        self.conversations: dict[str, list[dict[str, Any]]] = {}
        self.responses: list[ResponseRequest] = []
        self.calls: list[str] = []  # "METHOD route" per request, in order: round trips
        self.latency: dict[str, float] = {}
        self.unreachable = False

    @property
    def endpoint(self) -> str:
        """AZURE_AI_PROJECT_ENDPOINT for this server."""
        return f"{self.url}{PROJECT}"

    def _routes(self, app: web.Application) -> None:
        super()._routes(app)
        app.middlewares.append(self._reachable)
        app.router.add_get(f"{PROJECT}/openai/v1/conversations/{{id}}/items", self._list)
        app.router.add_get(f"{PROJECT}/agents/{{name}}", self._get_agent)
        app.router.add_post(f"{PROJECT}/agents/{{name}}/versions", self._create_version)
        app.router.add_post(f"{PROJECT}/openai/v1/conversations", self._create_conversation)
        app.router.add_post(f"{PROJECT}/openai/v1/conversations/{{id}}/items", self._append)
        app.router.add_post(f"{PROJECT}/openai/v1/responses", self._respond)

    @web.middleware
    async def _reachable(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.unreachable:
            assert request.transport is not None
            request.transport.abort()  # the client sees the connection go, as when the project cannot be reached
            return web.Response()
        return await handler(request)

    async def _wait(self, route: str, method: str) -> None:
        self.calls.append(f"{method} {route}")
        if delay := self.latency.get(route):
            await asyncio.sleep(delay)

    # Agents -------------------------------------------------------------------------------------------------------

    async def _get_agent(self, request: web.Request) -> web.Response:
        await self._wait("agents", "GET")
        name = request.match_info["name"]
        if name not in self.agents:
            return _azure_error(404, "NotFound", f"Agent {name} not found")
        versions = self.agents[name]
        return web.json_response({"object": "agent", "id": name, "name": name, "state": "enabled",
                                  "versions": {"latest": versions[-1]}})

    async def _create_version(self, request: web.Request) -> web.Response:
        await self._wait("agents", "POST")
        name, body = request.match_info["name"], await request.json()
        if body.get("definition", {}).get("kind") != "prompt" or not body["definition"].get("model"):
            return _azure_error(400, "BadRequest", "definition must be a prompt agent with a model")
        versions = self.agents.setdefault(name, [])
        version = {"object": "agent.version", "id": f"{name}:{len(versions) + 1}", "name": name,
                   "version": str(len(versions) + 1), "created_at": int(time.time()),
                   "description": body.get("description"), "metadata": body.get("metadata") or {},
                   "definition": body["definition"]}
        versions.append(version)
        return web.json_response(version)

    # Conversations ------------------------------------------------------------------------------------------------

    async def _create_conversation(self, request: web.Request) -> web.Response:
        await self._wait("conversations", "POST")
        body = await request.json()
        if len(body.get("items") or []) > 20:
            return error_response(400, "invalid_request_error", "at most 20 items")
        conversation = f"conv_{uuid.uuid4().hex}"
        self.conversations[conversation] = [_stored(i) for i in body.get("items") or []]
        return web.json_response({"id": conversation, "object": "conversation", "created_at": int(time.time()),
                                  "metadata": body.get("metadata") or {}})

    async def _append(self, request: web.Request) -> web.Response:
        await self._wait("items", "POST")
        conversation, body = request.match_info["id"], await request.json()
        if conversation not in self.conversations:
            return error_response(404, "not_found", f"Conversation with id '{conversation}' not found.")
        items = [_stored(i) for i in body.get("items") or []]
        if not 0 < len(items) <= 20:
            return error_response(400, "invalid_request_error", "1 to 20 items")
        self.conversations[conversation].extend(items)
        return web.json_response({"object": "list", "data": items, "first_id": items[0]["id"],
                                  "last_id": items[-1]["id"], "has_more": False})

    async def _list(self, request: web.Request) -> web.Response:
        await self._wait("items", "GET")
        conversation = request.match_info["id"]
        if conversation not in self.conversations:
            return error_response(404, "not_found", f"Conversation with id '{conversation}' not found.")
        items = [_listed(i) for i in self.conversations[conversation]]
        if request.query.get("order", "desc") == "desc":
            items.reverse()
        items = items[: int(request.query.get("limit", "20"))]
        return web.json_response({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                                  "last_id": items[-1]["id"] if items else None, "has_more": False})

    # Responses ----------------------------------------------------------------------------------------------------

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        await self._wait("responses", "POST")
        body = await request.json()
        agent = (body.get("agent_reference") or {}).get("name", "")
        conversation = body.get("conversation") or ""
        if isinstance(conversation, dict):
            conversation = conversation.get("id", "")
        if agent not in self.agents:
            return error_response(404, "not_found", f"Agent '{agent}' not found.")
        if conversation not in self.conversations:
            return error_response(404, "not_found", f"Conversation with id '{conversation}' not found.")
        given = body.get("input") or []
        given = [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else given
        seen = [*self.conversations[conversation], *[_stored(i) for i in given]]
        answered = {i["call_id"] for i in seen if i.get("type") == "function_call_output"}
        if dangling := [i["call_id"] for i in seen if i.get("type") == "function_call" and i["call_id"] not in answered]:
            message = f"No tool output found for function call {dangling[0]}."
            return error_response(400, "invalid_request_error", message)
        self.responses.append(ResponseRequest(agent, conversation, given, seen))
        step = await self._next_step(request, "foundry")
        if not isinstance(step, Step):
            return step
        output: list[dict[str, Any]] = []
        frames = (None if event is None else f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
                  async for event in _events(step, agent, output))
        response, completed = await self._stream(request, frames)
        if not completed:
            return response
        # Like the service: a completed response adds its input and its output to the conversation.
        self.conversations[conversation].extend([*[_stored(i) for i in given], *output])
        return response


async def _events(step: Step, agent: str, output: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any] | None]:
    response_id = f"resp_{uuid.uuid4().hex}"
    head = {"id": response_id, "object": "response", "created_at": int(time.time()), "model": "test-model",
            "agent_reference": {"name": agent, "type": "agent_reference"}, "output": [], "status": "in_progress"}
    sequence = iter(range(10**6))

    def event(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "sequence_number": next(sequence), **fields}

    yield event("response.created", response=head)
    words = re.findall(r"\S+\s*", step.text)
    if words:
        message_id = f"msg_{uuid.uuid4().hex}"
        yield event("response.output_item.added", output_index=0,
                    item={"id": message_id, "type": "message", "role": "assistant", "status": "in_progress",
                          "content": []})
        for word in words[: step.stall_after] if step.stall_after is not None else words:
            yield event("response.output_text.delta", item_id=message_id, output_index=0, content_index=0,
                        delta=word, logprobs=[])
        if step.stall_after is not None:
            yield None
            return
        message = {"id": message_id, "type": "message", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": step.text, "annotations": []}]}
        output.append(message)
        yield event("response.output_item.done", output_index=0, item=message)
    for name, arguments in step.tool_calls:
        call = {"id": f"fc_{uuid.uuid4().hex}", "type": "function_call", "call_id": f"call_{uuid.uuid4().hex[:24]}",
                "name": name, "arguments": arguments, "status": "completed"}
        yield event("response.output_item.added", output_index=len(output), item={**call, "arguments": ""})
        yield event("response.output_item.done", output_index=len(output), item=call)
        output.append(call)
    yield event("response.completed", response={**head, "status": "completed", "output": output})


def _stored(item: dict[str, Any]) -> dict[str, Any]:
    return {"id": item.get("id") or f"item_{uuid.uuid4().hex}", "type": item.get("type", "message"),
            **{k: v for k, v in item.items() if k not in ("id", "type")}}


def _listed(item: dict[str, Any]) -> dict[str, Any]:
    """An item as the service lists it: a message's text content becomes one input_text/output_text part."""
    if item["type"] != "message" or not isinstance(item.get("content"), str):
        return item
    part = "output_text" if item.get("role") == "assistant" else "input_text"
    return {**item, "status": "completed", "content": [{"type": part, "text": item["content"]}]}


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [])


def _azure_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@pytest_asyncio.fixture
async def foundry_server() -> AsyncIterator[FoundryTestServer]:
    """A fresh Foundry project stand-in on a free localhost port."""
    async with serving(FoundryTestServer()) as server:
        yield server
