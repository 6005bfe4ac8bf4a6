"""`--fast`: the conversation core in this process. The default stack is the real one, as processes (live.py).

The stack a journey runs on here: the project's own services as `build_services` wires them (the conversation core,
the scenario, the chosen policy, the verifier), on the embedded stores (SQLite in a folder of the journey's own,
in-process session state), with the local ACS emulator in this process receiving every WhatsApp message sent:
verification codes and handoff invites, read back from its outbox as the customer would read their phone.

Each journey gets fresh services and data (one journey's codes or locks never touch another's); the emulator is
shared, and each journey reads only what went to its own customer's number after it started.
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from evals.exchange import Exchange, Follow, Leg
from evals.foundry import FOUNDRY_KEYS
from evals.journeys import Journey
from local.acs.messages import CHANNEL_ID, MessagesApi
from local.acs.server import AcsEmulator, EmulatorService
from local.host_process import free_port
from local.verifying import proof_async
from shared import handoff
from shared.bootstrap import Services, build_services
from shared.models import Channel, Identity, IdentityKind, new_id
from shared.router import phone_of
from shared.settings import Settings

ACCESS_KEY = base64.b64encode(b"switchboard-evaluation-journeys!").decode()
#: What a model-backed policy (and the Foundry policy: FOUNDRY_KEYS) reads from the environment; nothing else leaks in
#: from the caller's shell.
MODEL_KEYS = ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_DEPLOYMENT", "AZURE_OPENAI_API_VERSION",
              "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "LLM_TIMEOUT_SECONDS")


@dataclass
class Stack:
    acs_url: str
    acs: httpx.AsyncClient  # reads the emulator's outbox
    policy: str
    root: Path

    @asynccontextmanager
    async def services(self, scenario: str, name: str) -> AsyncIterator[Services]:
        """Fresh services for one journey: its own data folder, memory session state, the emulator for messages."""
        folder = Path(tempfile.mkdtemp(prefix=name.replace("/", "-") + "-", dir=self.root))
        env = {
            "SWITCHBOARD_SCENARIO": scenario, "SWITCHBOARD_DATA_DIR": str(folder), "SESSION_STATE": "memory",
            "SWITCHBOARD_POLICY": self.policy, "ACS_ENDPOINT": self.acs_url, "ACS_ACCESS_KEY": ACCESS_KEY,
            "WHATSAPP_CHANNEL_ID": CHANNEL_ID, "LOG_LEVEL": "WARNING",
            **{k: os.environ[k] for k in (*MODEL_KEYS, *FOUNDRY_KEYS) if os.environ.get(k)},
        }
        services = await build_services(Settings.from_env(env))
        try:
            yield services
        finally:
            await services.policy.close()
            await services.messenger.close()  # type: ignore[attr-defined]
            await services.customers.close()  # type: ignore[attr-defined]
            await services.state.close()


@asynccontextmanager
async def stack(policy: str = "offline") -> AsyncIterator[Stack]:
    """The ACS emulator on a free local port, and a scratch folder for the journeys' stores."""
    service = EmulatorService(AcsEmulator(access_key=ACCESS_KEY, functions_url=f"http://127.0.0.1:{free_port()}",
                                          modules=[MessagesApi(CHANNEL_ID, status_step=3600)]), free_port())
    await service.start()
    with tempfile.TemporaryDirectory(prefix="switchboard-evals-") as root:
        async with httpx.AsyncClient(timeout=20) as acs:
            try:
                yield Stack(service.url, acs, policy, Path(root))
            finally:
                await service.stop()


@dataclass
class InProcessDriver:
    """`--fast`: each journey on fresh in-process services (`Stack.services`), the handoff's steps called directly."""

    stack: Stack
    name: str = "in-process"

    @asynccontextmanager
    async def stage(self, journey: Journey) -> AsyncIterator[InProcessStage]:
        async with self.stack.services(journey.scenario, journey.id) as services:
            if journey.queue:
                await services.queue.set(**journey.queue)
            yield InProcessStage(self.stack, services)


@dataclass
class InProcessStage:
    stack: Stack
    services: Services

    async def open(self, journey: Journey) -> Leg:
        """A session as the channel opens one: a web chat visitor is nobody yet; a caller or a WhatsApp sender is
        their number (the channel vouches for it as far as it can)."""
        channel = Channel(journey.channel)
        session_id = new_id({"voice": "call", "whatsapp": "wa"}.get(channel.value, "web"))
        phone = journey.phone
        identity = Identity(IdentityKind.PHONE, phone) if phone else Identity(IdentityKind.WEBCHAT, session_id)
        opened = await self.services.conversation.open_for_identity(channel, session_id, identity,
                                                                   greet=channel is not Channel.WHATSAPP)
        return CoreLeg(self.services, channel, session_id, opened.customer.customer_id,
                       " ".join(r.text for r in opened.replies))

    async def follow(self, leg: Leg, to: str, journey: Journey, accepted_at: float) -> Follow:
        """The handoff's steps as the orchestration runs them (summary, context saved, invite sent), then the
        customer picks it up: a WhatsApp reply from the invited number, or the web chat link opened."""
        services, source = self.services, leg
        assert isinstance(source, CoreLeg)
        plan = handoff.HandoffPlan(handoff.instance_id_for(source.session_id), source.customer_id, source.session_id,
                                   source.channel.value, to, services.settings.handoff_remind_after_seconds,
                                   services.settings.handoff_expire_after_seconds)
        summary = await handoff.summarise(services, plan)
        owner = await handoff.save_context(services, plan, summary)
        plan = handoff.HandoffPlan(**{**plan.to_dict(), "customer_id": owner})
        sent = await handoff.invite(services, plan)
        if not sent.get("sent"):
            return Follow(None, why="the invite was not sent")
        session_id = new_id("wa" if to == "whatsapp" else "web")
        if to == "whatsapp":  # the reply comes from the number the invite went to, whoever's record holds it
            number = Identity(IdentityKind.PHONE, phone_of(await services.customers.get(owner)) or journey.phone)
            customer = await services.customers.find_by_identity(number)
            if customer is None:
                return Follow(None, why=f"no record holds {number.value}")
            opened = await services.conversation.open(Channel.WHATSAPP, session_id, customer.customer_id,
                                                      greet=False, proven=number)
        else:
            opened = await services.conversation.open(Channel.WEBCHAT, session_id, owner)
        if opened.continued is None:
            return Follow(None, why="the new session did not continue the handoff")
        first = " ".join(r.text for r in opened.replies)
        new = CoreLeg(services, Channel(to), session_id, opened.customer.customer_id, first)
        return Follow(new, first, time.monotonic() - accepted_at)

    async def proof(self, asked: str, account: str, scenario: str) -> str:
        return await proof_async(self.stack.acs, asked, self.stack.acs_url, account, scenario)


class CoreLeg:
    """The customer's side of one channel session, straight into the conversation core."""

    exact = True

    def __init__(self, services: Services, channel: Channel, session_id: str, customer_id: str,
                 opening: str) -> None:
        self.services, self.session_id, self.customer_id, self.opening = services, session_id, customer_id, opening
        self.channel = channel

    async def say(self, text: str) -> Exchange:
        outcome = await self.services.conversation.turn(self.session_id, self.customer_id, text)
        reply = " ".join(r.text for r in outcome.replies)
        return Exchange(heard=reply, said=reply, tools={r.tool for r in outcome.replies if r.tool},
                        switch_to=outcome.switch_to, escalated=outcome.escalation is not None,
                        collected=dict(outcome.customer.collected), answered_at=time.monotonic())

    async def known(self) -> dict[str, str]:
        return dict((await self.services.customers.get(self.customer_id)).collected)

    async def close(self) -> None:
        pass
