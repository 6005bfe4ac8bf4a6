"""The real stack, as processes: each journey gets its own `python -m local` (the Functions host stand-in with its
local Durable engine, the ACS emulator and the media gateway), on a fresh data folder, started the way the tests
start it (local/host_process.py), so one journey's records, codes or handoffs never touch another's.

The customer reaches it only as a customer would: web chat over the HTTP API; WhatsApp through the emulator's
inbound webhook path, reading the agent's replies from its outbox; a call through the emulator with the customer's
lines spoken by piper and the agent's audio transcribed by the offline speech-to-text (local/phone.py's handset).
A channel move runs the real Durable handoff: the invite is read from the outbox, answered on WhatsApp or its web
chat link opened, and the handoff's status must reach `engaged`.

What the runner scores beyond the words heard (tools reached, slots collected, the move accepted, a person asked
for) is read from the customer's record in the host's own store, as the desk reads it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx

from evals.exchange import Exchange, Follow, Leg
from evals.journeys import Journey
from local.handoff_links import sent_link
from local.host_process import LocalHost, free_port, start_local_host
from local.verifying import proof_async
from shared.handoff import instance_id_for
from shared.models import Channel, ChannelSession, Customer, Identity, IdentityKind
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore

#: What the customer writes to answer a WhatsApp invite (not counted as a turn: it is the handoff's step, as
#: opening the web chat link is).
INVITE_ANSWER = "hi"
#: A handoff that has not reached `engaged` this long after the customer answered did not continue.
ENGAGED_TIMEOUT = 30.0
#: On a call: silence that ends the agent's answer, and how long an answer may take to begin.
QUIET_SECONDS, REPLY_TIMEOUT = 1.2, 30.0
_CODE = re.compile(r"^\d{4,10}$")


@dataclass
class LiveDriver:
    """`python -m local` per journey with `policy`; `model_env` is passed to it (OPENAI_* / AZURE_OPENAI_*)."""

    policy: str = "offline"
    model_env: dict[str, str] = field(default_factory=dict)
    name: str = "live"
    _engines: Any = None
    _root: tempfile.TemporaryDirectory | None = None
    _loading: asyncio.Lock = field(default_factory=asyncio.Lock)

    @asynccontextmanager
    async def stage(self, journey: Journey) -> AsyncIterator[LiveStage]:
        voice = journey.channel == "voice"
        async with self._loading:
            if voice and self._engines is None:
                self._engines = await asyncio.to_thread(_load_engines)
        self._root = self._root or tempfile.TemporaryDirectory(prefix="switchboard-evals-")
        folder = Path(tempfile.mkdtemp(prefix=journey.id.replace("/", "-") + "-", dir=self._root.name))
        gateway_port = free_port()
        env = {"SWITCHBOARD_SCENARIO": journey.scenario, "SWITCHBOARD_POLICY": self.policy, "LOG_LEVEL": "WARNING",
               "GATEWAY_PORT": str(gateway_port), "GATEWAY_PRELOAD_MODELS": "true" if voice else "false",
               **self.model_env}
        host = await asyncio.to_thread(start_local_host, folder, **env)
        stage = LiveStage(host, folder / "data", httpx.AsyncClient(timeout=60), self._engines,
                          load_scenario(journey.scenario).voice.vocabulary)
        try:
            if voice:
                await stage.wait_gateway_warm(f"http://127.0.0.1:{gateway_port}")
            await stage.http.get(f"{host.url}/api/ops/queue")  # the app seeds its demo customers on first use
            if journey.queue:
                (await stage.http.post(f"{host.url}/api/ops/queue", json={"set": journey.queue})).raise_for_status()
            yield stage
        finally:
            await stage.close()
            await asyncio.to_thread(host.stop)

    def close(self) -> None:
        if self._root is not None:
            self._root.cleanup()


class _SharedEngines:
    """piper and faster-whisper, loaded once and used by one call at a time (journeys may run side by side)."""

    def __init__(self) -> None:
        from local.phone import Engines

        self._engines = Engines(transcribe=True)
        self._engines.load(need_voice=True)
        self._lock = threading.Lock()

    def speak(self, text: str, rate: int) -> bytes:
        with self._lock:
            return self._engines.speak(text, rate)

    def transcribe(self, pcm: bytes, rate: int, vocabulary: Sequence[str] = ()) -> str:
        with self._lock:
            return self._engines.transcribe(pcm, rate, vocabulary)


def _load_engines() -> _SharedEngines:
    return _SharedEngines()


class LiveStage:
    def __init__(self, host: LocalHost, data_dir: Path, http: httpx.AsyncClient, engines: Any,
                 vocabulary: Sequence[str] = ()) -> None:
        self.host, self.http, self.engines, self.vocabulary = host, http, engines, tuple(vocabulary)
        self.store = SqliteCustomerStore(data_dir / "customers.sqlite3")
        self.legs: list[Leg] = []

    async def close(self) -> None:
        for leg in self.legs:
            await leg.close()
        await self.store.close()
        await self.http.aclose()

    # What a journey does ------------------------------------------------------------------------------------------

    async def open(self, journey: Journey) -> Leg:
        leg: Leg
        if journey.channel == "webchat":
            leg = await WebChatLeg.start(self)
        elif journey.channel == "whatsapp":
            leg = WhatsAppLeg(self, journey.phone)
        else:
            leg = await VoiceLeg.dial(self, journey.phone)
        self.legs.append(leg)
        return leg

    async def follow(self, leg: Leg, to: str, journey: Journey, accepted_at: float) -> Follow:
        """The customer picks up the move the real handoff started: the invite (or link) from the outbox, answered."""
        instance_id = instance_id_for(leg.session_id)  # type: ignore[attr-defined]
        try:
            invite = await self._wait(self._invite, "no invite was sent for the move")
        except TimeoutError as exc:
            return Follow(None, why=str(exc))
        if to == "whatsapp":
            new: Leg = WhatsAppLeg(self, invite["to"])
            first = await new.say(INVITE_ANSWER)
            opening = first.heard
        else:
            link = sent_link(await self.outbox(invite["to"]), instance_id)
            if link is None:
                return Follow(None, why="the invite carried no web chat link")
            token = parse_qs(urlsplit(link).query)["handoff"][0]
            new = await WebChatLeg.start(self, token)
            opening = new.opening
        self.legs.append(new)
        seconds = time.monotonic() - accepted_at
        try:
            await self._wait(lambda: self._engaged(instance_id), "the handoff did not reach engaged")
        except TimeoutError as exc:
            return Follow(None, opening, seconds, why=str(exc))
        new.opening = opening
        return Follow(new, opening, seconds)

    async def proof(self, asked: str, account: str, scenario: str) -> str:
        return await proof_async(self.http, asked, self.host.acs_url, account, scenario)

    # The host, the emulator, the record --------------------------------------------------------------------------

    async def outbox(self, phone: str | None = None) -> list[dict[str, Any]]:
        params = {"to": phone} if phone else {}
        response = await self.http.get(f"{self.host.acs_url}/_emulator/messages", params=params)
        response.raise_for_status()
        return response.json()

    async def _invite(self) -> dict[str, Any] | None:
        """The handoff's invite or link, as it reached the customer's phone (each journey has its own emulator)."""
        return next((m for m in reversed(await self.outbox()) if m.get("kind") == "template"
                     and "handoff" in str(m.get("template"))), None)

    async def _engaged(self, instance_id: str) -> bool:
        status = await self.http.get(f"{self.host.url}/api/handoffs/{instance_id}")
        return status.status_code == 200 and status.json().get("step") == "engaged"

    @staticmethod
    async def _wait(check: Any, why: str, timeout: float = ENGAGED_TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while not (found := await check()):
            if time.monotonic() > deadline:
                raise TimeoutError(why)
            await asyncio.sleep(0.1)
        return found

    async def wait_gateway_warm(self, url: str) -> None:
        async def warm() -> bool:
            try:
                return bool((await self.http.get(f"{url}/healthz")).json()["engines"].get("warm"))
            except (httpx.HTTPError, KeyError, ValueError):
                return False

        await self._wait(warm, f"the media gateway at {url} did not load its speech engines", 90)

    async def customer(self, identity: Identity) -> Customer | None:
        return await self.store.find_by_identity(identity)

    async def turns(self, customer_id: str, session_id: str) -> ChannelSession:
        return await self.store.get_session(customer_id, session_id)

    async def exchange(self, customer_id: str, session_id: str, before: int, heard: str) -> Exchange:
        """The turn after the first `before` turns of the session, from the record."""
        session = await self.turns(customer_id, session_id)
        new = session.turns[before:]
        asked = next((t for t in new if t.role == "customer"), None)
        replies = [t for t in new if t.role == "agent"]
        customer = await self.store.get(customer_id)
        return Exchange(
            heard=heard, said=" ".join(t.text for t in replies), tools={t.tool for t in replies if t.tool},
            switch_to=asked.switch_to if asked else None, escalated=bool(customer.escalations),
            collected=dict(customer.collected), answered_at=time.monotonic(), understood=asked.text if asked else "",
        )


# Channels -----------------------------------------------------------------------------------------------------------


class WebChatLeg:
    channel, exact = "webchat", True

    def __init__(self, stage: LiveStage, created: dict[str, Any]) -> None:
        self.stage, self.session_id = stage, created["session_id"]
        self.auth = {"Authorization": f"Bearer {created['token']}"}
        self.customer_id = _claims(created["token"])["cid"]
        self.opening = " ".join(r["text"] for r in created["replies"])

    @classmethod
    async def start(cls, stage: LiveStage, handoff_token: str | None = None) -> WebChatLeg:
        body = {"handoff_token": handoff_token} if handoff_token else None
        created = await stage.http.post(f"{stage.host.url}/api/webchat/sessions", json=body)
        if created.status_code != 201:
            raise RuntimeError(f"POST /api/webchat/sessions: {created.status_code} {created.text}")
        return cls(stage, created.json())

    async def say(self, text: str) -> Exchange:
        before = len((await self.stage.turns(self.customer_id, self.session_id)).turns)
        response = await self.stage.http.post(f"{self.stage.host.url}/api/webchat/sessions/{self.session_id}/messages",
                                              json={"text": text}, headers=self.auth)
        if response.status_code != 200:
            raise RuntimeError(f"POST .../messages: {response.status_code} {response.text}")
        heard = " ".join(r["text"] for r in response.json()["replies"])
        return await self.stage.exchange(self.customer_id, self.session_id, before, heard)

    async def known(self) -> dict[str, str]:
        return dict((await self.stage.store.get(self.customer_id)).collected)

    async def close(self) -> None:
        pass


class WhatsAppLeg:
    channel, exact = "whatsapp", True
    opening = ""

    def __init__(self, stage: LiveStage, phone: str) -> None:
        self.stage, self.phone = stage, phone
        self.customer_id = self.session_id = ""

    async def say(self, text: str) -> Exchange:
        before_sent = len(await self.stage.outbox(self.phone))
        before = await self._turn_count()
        # The emulator posts the Event Grid event and answers once the host has handled it, sends included.
        response = await self.stage.http.post(f"{self.stage.host.acs_url}/_emulator/inbound",
                                              json={"from": self.phone, "text": text})
        if response.status_code != 200:
            raise RuntimeError(f"POST /_emulator/inbound: {response.status_code} {response.text}")
        sent = [m for m in (await self.stage.outbox(self.phone))[before_sent:] if m.get("kind") == "text"]
        await self._find_session()
        return await self.stage.exchange(self.customer_id, self.session_id, before,
                                         " ".join(str(m.get("content") or "") for m in sent))

    async def _turn_count(self) -> int:
        if not self.session_id:
            return 0
        return len((await self.stage.turns(self.customer_id, self.session_id)).turns)

    async def _find_session(self) -> None:
        customer = await self.stage.customer(Identity(IdentityKind.PHONE, self.phone))
        if customer is None:
            raise RuntimeError(f"no record holds {self.phone} after its message")
        sessions = [s for s in customer.sessions.values() if s.channel is Channel.WHATSAPP]
        self.customer_id, self.session_id = customer.customer_id, max(sessions, key=lambda s: s.started_at).session_id

    async def known(self) -> dict[str, str]:
        customer = await self.stage.customer(Identity(IdentityKind.PHONE, self.phone))
        return dict(customer.collected) if customer else {}

    async def close(self) -> None:
        pass


class VoiceLeg:
    """A phone call through the emulator: each line spoken by piper, each answer transcribed as it was heard."""

    channel, exact = "voice", False

    def __init__(self, stage: LiveStage, phone: str) -> None:
        self.stage, self.phone = stage, phone
        self.customer_id = self.session_id = self.opening = ""
        self._http: aiohttp.ClientSession | None = None
        self._handset: Any = None
        self._listener: asyncio.Task | None = None

    @classmethod
    async def dial(cls, stage: LiveStage, phone: str) -> VoiceLeg:
        from local.phone import Handset, place_call, wait_for_answer

        leg = cls(stage, phone)
        leg._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        call = await place_call(leg._http, stage.host.acs_url, phone)
        ws = await leg._http.ws_connect(f"{stage.host.acs_url}/_emulator/calls/{call['id']}/media", heartbeat=None)
        leg._handset = Handset(ws)
        leg._listener = asyncio.create_task(leg._handset.listen())
        await asyncio.wait_for(leg._handset.streaming.wait(), 30)
        greeting = await wait_for_answer(leg._handset, time.monotonic() - 1, quiet=QUIET_SECONDS,
                                         timeout=REPLY_TIMEOUT)
        leg.opening = await leg._transcribe(greeting.pcm)
        customer = await stage._wait(lambda: stage.customer(Identity(IdentityKind.PHONE, phone)),
                                     "the call opened no session on the record")
        sessions = [s for s in customer.sessions.values() if s.channel is Channel.VOICE]
        leg.customer_id, leg.session_id = customer.customer_id, max(sessions, key=lambda s: s.started_at).session_id
        return leg

    async def say(self, text: str) -> Exchange:
        from local.phone import wait_for_answer

        handset = self._handset
        session = await self.stage.turns(self.customer_id, self.session_id)
        before, customers = len(session.turns), sum(t.role == "customer" for t in session.turns)
        if handset.ended.is_set():
            raise RuntimeError(f"the call had ended ({handset.end_reason}) before the customer could say {text!r}")
        if _CODE.match(text):  # a code is keyed, as a caller reads it off their phone
            since = await handset.press(text)
        else:
            pcm = await asyncio.to_thread(self.stage.engines.speak, text, handset.sample_rate)
            since = await handset.say(pcm)
        answer = await wait_for_answer(handset, since, quiet=QUIET_SECONDS, timeout=REPLY_TIMEOUT)
        heard = await self._transcribe(answer.pcm)

        async def answered() -> bool:
            turns = (await self.stage.turns(self.customer_id, self.session_id)).turns
            return sum(t.role == "customer" for t in turns) > customers and turns[-1].role == "agent"

        await self.stage._wait(answered, "the call's turn never reached the record", 10)
        exchange = await self.stage.exchange(self.customer_id, self.session_id, before, heard)
        exchange.answered_at = answer.first_audio_at or time.monotonic()
        return exchange

    async def _transcribe(self, pcm: bytes) -> str:
        # The caller's ear knows the scenario's names as the gateway's recogniser does (docs/voice.md).
        return await asyncio.to_thread(self.stage.engines.transcribe, pcm, self._handset.sample_rate,
                                       self.stage.vocabulary)

    async def known(self) -> dict[str, str]:
        return dict((await self.stage.store.get(self.customer_id)).collected)

    async def close(self) -> None:
        if self._handset is not None:
            await self._handset.hang_up()
            await asyncio.sleep(0.2)
            await self._handset.ws.close()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._http is not None:
            await self._http.close()


def _claims(token: str) -> dict[str, Any]:
    """A token's claims, unchecked: the session's own customer id, which the app put there."""
    parts = token.split(".")
    payload = parts[1] if len(parts) == 3 else parts[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
