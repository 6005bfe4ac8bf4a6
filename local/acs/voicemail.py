"""Who picks up a call the app places, when no phone is registered for the number: scripted personas.

`POST /_emulator/personas {"number": "+15555550123", "answers": "person" | "voicemail" | "busy" | "no_answer",
"say": "Hello?", "greeting": "...", "ring_seconds": 1.0}` makes the number behave so until it is removed
(`DELETE /_emulator/personas/{number}`); `GET /_emulator/personas` lists them.

- `person` answers after `ring_seconds` and says `say` (a short "Hello?"), then listens.
- `voicemail` answers after `ring_seconds`, plays `greeting` (an answering machine's words, seconds long) and a beep
  (a 1 kHz tone of half a second), then records whatever the app says (the call's `played` audio).
- `busy` is refused after a moment (CreateCallFailed, 486 Busy Here).
- `no_answer` rings for `ring_seconds` and gives up (CreateCallFailed, 408).

The spoken parts are synthesized with the offline voice the phone simulator uses (piper), loaded on first use.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np
from aiohttp import web

PERSON, VOICEMAIL, BUSY, NO_ANSWER = "person", "voicemail", "busy", "no_answer"
KINDS = (PERSON, VOICEMAIL, BUSY, NO_ANSWER)
GREETING = ("Hi, you've reached Jordan. I'm not available right now. Please leave a message after the tone, "
            "and I'll get back to you.")
BEEP_HZ, BEEP_SECONDS, BEEP_LEVEL = 1000.0, 0.5, 0.3
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class Persona:
    number: str
    answers: str
    say: str = "Hello?"
    greeting: str = GREETING
    ring_seconds: float = 1.0


def beep(rate: int) -> bytes:
    """An answering machine's beep: a pure 1 kHz tone, as 16-bit mono PCM at `rate`."""
    t = np.arange(int(rate * BEEP_SECONDS)) / rate
    return (np.sin(2 * np.pi * BEEP_HZ * t) * BEEP_LEVEL * 32767).astype(np.int16).tobytes()


def silence(rate: int, seconds: float) -> bytes:
    return b"\0\0" * int(rate * seconds)


class Voice:
    """piper, loaded once on first use, in a thread: the emulator's loop keeps streaming meanwhile."""

    def __init__(self) -> None:
        self._engines: Any = None
        self._lock = asyncio.Lock()

    async def speak(self, text: str, rate: int) -> bytes:
        async with self._lock:
            if self._engines is None:
                from local.phone import Engines

                engines = Engines(transcribe=False)
                await asyncio.to_thread(engines.load, True)
                self._engines = engines
        return await asyncio.to_thread(self._engines.speak, text, rate)


class Personas:
    def __init__(self) -> None:
        self.by_number: dict[str, Persona] = {}
        self.voice = Voice()

    def install(self, app: web.Application) -> None:
        app.router.add_post("/_emulator/personas", self.add)
        app.router.add_get("/_emulator/personas", self.list)
        app.router.add_delete("/_emulator/personas/{number}", self.remove)

    def get(self, number: str) -> Persona | None:
        return self.by_number.get(number)

    async def audio(self, persona: Persona, rate: int) -> bytes:
        """What the persona says once the call connects."""
        if persona.answers == VOICEMAIL:
            greeting = await self.voice.speak(persona.greeting, rate)
            return silence(rate, 0.3) + greeting + silence(rate, 0.4) + beep(rate)
        return silence(rate, 0.3) + await self.voice.speak(persona.say, rate)

    async def add(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _bad("the body must be a JSON object")
        number, answers = body.get("number"), body.get("answers")
        if not isinstance(number, str) or not _E164.match(number):
            return _bad('"number" must be an E.164 number like "+15555550123"')
        if answers not in KINDS:
            return _bad(f'"answers" must be one of {", ".join(KINDS)}')
        ring = body.get("ring_seconds", 1.0)
        if not isinstance(ring, (int, float)) or isinstance(ring, bool) or not 0 <= ring <= 120:
            return _bad('"ring_seconds" must be a number of seconds from 0 to 120')
        texts = {name: body.get(name) for name in ("say", "greeting") if body.get(name) is not None}
        if any(not isinstance(text, str) or not text.strip() or len(text) > 500 for text in texts.values()):
            return _bad('"say" and "greeting" must be non-empty strings of at most 500 characters')
        persona = Persona(number, str(answers), ring_seconds=float(ring), **texts)
        self.by_number[number] = persona
        return web.json_response(asdict(persona), status=201)

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response({"personas": [asdict(p) for p in self.by_number.values()]})

    async def remove(self, request: web.Request) -> web.Response:
        if self.by_number.pop(unquote(request.match_info["number"]), None) is None:
            return web.json_response({"error": {"code": "NotFound", "message": "no such persona"}}, status=404)
        return web.Response(status=204)


def _bad(message: str) -> web.Response:
    return web.json_response({"error": {"code": "BadRequest", "message": message}}, status=400)
