"""An OpenAI-compatible chat model for the soak: a fake at the network boundary, which says what history it was sent.

No real model can run here, and a scripted one would not know which turn it answers. This one answers every
request the same way, from the request alone: it names the customer message it answers (by the tag the soak puts
in each message, like `[a1.17]`), the tagged message just before it in the history it was sent, and how many
earlier customer messages that history held:

    Noted [a1.17] after [a1.16] (16 earlier).

So a customer can tell from the reply alone whether the turn that wrote it saw their previous message: a turn that
ran on stale history names an older message (or none: `after [-]`). The answer starts after a random delay
(`delay` seconds at most), as a model's does, so that a burst of messages has turns in flight at once.

It speaks the wire format the `openai` SDK parses: `POST /v1/chat/completions` answered with server-sent events (one
`chat.completion.chunk` per `data:` line, then `data: [DONE]`), or one JSON completion when `stream` is false. It
never calls tools. tests/peers/openai_server.py is the scripted sibling the tests use.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

TAG = re.compile(r"\[([a-z]\d+\.\d+)\]")
NOTED = re.compile(r"Noted \[(?P<tag>[^\]]+)\] after \[(?P<after>[^\]]+)\] \((?P<earlier>\d+) earlier\)")
NONE = "-"


@dataclass(frozen=True)
class Noted:
    """What one reply says about the turn that wrote it."""
    tag: str  # the message it answers
    after: str  # the tagged customer message just before it in the turn's history, or NONE
    earlier: int  # customer messages in the turn's history


def noted(text: str) -> Noted | None:
    """Read a reply of this model back; None for any other text (a fallback line, a template)."""
    match = NOTED.search(text)
    return Noted(match["tag"], match["after"], int(match["earlier"])) if match else None


def answer(messages: list[dict[str, Any]]) -> str:
    said = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    current, earlier = (said[-1], said[:-1]) if said else ("", [])
    tag = TAG.search(current)
    after = TAG.search(earlier[-1]) if earlier else None
    return f"Noted [{tag[1] if tag else NONE}] after [{after[1] if after else NONE}] ({len(earlier)} earlier)."


class FakeLlm:
    """The model on a free localhost port; `base_url` goes into OPENAI_BASE_URL."""

    def __init__(self, delay: float, seed: int) -> None:
        self.delay, self.rng = delay, random.Random(seed)
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests += 1
        text = answer(body.get("messages") or [])
        await asyncio.sleep(self.rng.uniform(0.0, self.delay))
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": body.get("model")}
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                      "logprobs": None}
            return web.json_response({**head, "object": "chat.completion", "choices": [choice]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            for delta, finish in (({"role": "assistant", "content": ""}, None), ({"content": text}, None),
                                  ({}, "stop")):
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                chunk = {**head, "object": "chat.completion.chunk", "choices": [choice]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the host went away mid-answer (a SIGKILL): nothing to finish
        return response
