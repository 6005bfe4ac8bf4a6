"""Fixtures for the media gateway: the offline engines (loaded once a session), caller speech synthesized with piper
at test time, the real conversation core on the embedded stores, and the gateway served on a real port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from media_gateway.audio import float_to_pcm16, resample
from media_gateway.engines import Engines, build_engines
from media_gateway.hooks import CallHooks
from media_gateway.server import Gateway, create_app
from shared.bootstrap import Services, build_services
from shared.calls import tokens as call_tokens
from shared.calls.tokens import MEDIA_AUDIENCE
from shared.models import Channel, Identity, IdentityKind, new_id
from shared.settings import Settings
from tests.peers import serving

#: Caller speech level: piper normalises to full scale; a phone line is quieter.
CALLER_GAIN = 0.5

Speech = Callable[..., bytes]


@pytest.fixture(scope="session")
def metric_reader() -> InMemoryMetricReader:
    """The gateway's OpenTelemetry instruments, read in memory (set before any gateway meter exists)."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


@pytest.fixture(scope="session")
async def offline_engines() -> AsyncIterator[Engines]:
    engines = build_engines(Settings.from_env({}), "offline")
    await engines.warm()
    yield engines
    await engines.close()


@pytest.fixture(scope="session")
def speech(offline_engines: Engines) -> Speech:
    """`speech(text, rate=16000)`: a caller saying `text`, as PCM16 at `rate` (piper, read as written), the same audio
    for the same text every run: piper without its sampling noise. With it, each run spoke a little differently, and
    now and then a pause after a comma was long enough to end the turn there, or tiny.en misheard a word: a test
    failed one run in ten for what was said, not for what the gateway did. The benchmarks keep the noise."""
    from piper.config import SynthesisConfig

    voice = offline_engines.tts.voice()  # type: ignore[attr-defined]
    steady = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    cache: dict[tuple[str, int], bytes] = {}

    def say(text: str, rate: int = 16000) -> bytes:
        if (text, rate) not in cache:
            audio = np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text, steady)])
            cache[text, rate] = float_to_pcm16(resample(audio, voice.config.sample_rate, rate) * CALLER_GAIN)
        return cache[text, rate]

    return say


@pytest.fixture(scope="session")
async def services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    data_dir = tmp_path_factory.mktemp("gateway-data")
    built = await build_services(Settings.from_env({"SWITCHBOARD_DATA_DIR": str(data_dir), "SWITCHBOARD_POLICY": "offline"}))
    yield built
    await built.close()


@dataclass
class VoiceCall:
    """A voice session opened the way the call function opens one, and the media URL it would answer with."""

    session_id: str
    customer_id: str
    call_id: str
    token: str
    url: str


@dataclass
class RunningGateway:
    gateway: Gateway
    base_url: str  # http://127.0.0.1:PORT
    services: Services
    ended: list[tuple[str, str]]  # (call id, reason) for each call the gateway ended
    handoffs: list[tuple[str, str]]  # (call id, channel) for each handoff the gateway started
    transfers: list[tuple[str, str]] = field(default_factory=list)  # (call id, escalation id) for each put-through

    async def open_call(self, phone: str = "+15555550177") -> VoiceCall:
        """Open a voice session (its greeting is what the gateway speaks first) and sign its media token."""
        customer, _ = await self.services.customers.get_or_create(Identity(IdentityKind.PHONE, phone))
        session_id, call_id = new_id("voice"), new_id("call")
        await self.services.conversation.open(Channel.VOICE, session_id, customer.customer_id)
        token = call_tokens.issue(self.services.tokens, self.services.settings, MEDIA_AUDIENCE,
                                  call=call_id, sid=session_id, cid=customer.customer_id)
        return VoiceCall(session_id, customer.customer_id, call_id, token, f"{self.base_url}/media?token={token}")


@pytest.fixture(scope="session")
async def gateway(
    services: Services, offline_engines: Engines, metric_reader: InMemoryMetricReader
) -> AsyncIterator[RunningGateway]:
    ended: list[tuple[str, str]] = []
    handoffs: list[tuple[str, str]] = []

    async def end_call(call, reason: str) -> None:
        ended.append((call.call_id, reason))

    async def start_handoff(call, channel: str) -> None:
        handoffs.append((call.call_id, channel))

    async def transfer(call, escalation_id: str) -> None:
        transfers.append((call.call_id, escalation_id))

    transfers: list[tuple[str, str]] = []
    hooks = CallHooks(end_call=end_call, start_handoff=start_handoff, transfer=transfer)
    running = Gateway(services, offline_engines, hooks=hooks)
    async with serving(create_app(running)) as url:
        yield RunningGateway(running, url, services, ended, handoffs, transfers)
