"""The Azure AI Speech adapters, against an endpoint where nothing listens (there is no Speech service here).

They build the real SDK objects and go through the real connection attempt; a failed service must come back as the
port's retryable error, promptly, not as a hang or an SDK exception.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from media_gateway.engines import build_engines
from media_gateway.stt import SttError
from media_gateway.stt.azure_speech import AzureSpeechStt
from media_gateway.tts import TtsError
from media_gateway.tts.azure_speech import AzureSpeechTts
from shared.settings import Settings, SettingsError
from tests.peers import free_port


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({"SPEECH_ENDPOINT": f"https://127.0.0.1:{free_port()}", "SPEECH_KEY": "0" * 32})


def test_speech_settings_choose_the_azure_engines(settings: Settings) -> None:
    engines = build_engines(settings)
    assert (engines.kind, engines.stt.name, engines.tts.name) == ("azure", "azure-speech", "azure-speech")
    assert build_engines(Settings.from_env({})).kind == "offline"
    with pytest.raises(SettingsError, match="SPEECH_REGION needs SPEECH_KEY"):
        Settings.from_env({"SPEECH_REGION": "eastus"}).uses_azure_speech


@pytest.mark.parametrize("vocabulary", [(), ("Lakeview Drive", "Shelbyville")])  # with the scenario's phrase list too
async def test_an_unreachable_service_is_a_retryable_stt_error(settings: Settings, vocabulary) -> None:
    with ThreadPoolExecutor(2) as executor:
        stream = AzureSpeechStt(settings, executor).stream(vocabulary)
        await stream.push(bytes(3200))
        with pytest.raises(SttError, match="Azure speech-to-text failed") as error:
            await asyncio.wait_for(stream.finish(), timeout=20)
    assert error.value.retryable


async def test_an_unreachable_service_is_a_retryable_tts_error_after_one_retry(settings: Settings, caplog) -> None:
    with ThreadPoolExecutor(2) as executor:
        tts = AzureSpeechTts(settings, executor)
        with pytest.raises(TtsError, match="Azure TTS failed") as error:
            # The SDK gives up on a refused connection after ~5 s, so the two tries take ~10 s on an idle machine and
            # went past 20 s on a loaded one: the bound is for a hang, not a measure of speed.
            async with asyncio.timeout(45):
                async for _ in tts.synthesize("Hello there.", 16000):
                    pass
    assert error.value.retryable
    assert sum("trying again" in r.getMessage() for r in caplog.records) == 1
