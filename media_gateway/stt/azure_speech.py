"""Azure AI Speech speech-to-text, streaming from a push stream (azure-cognitiveservices-speech).

One recognizer per stretch of caller speech: it is created and started when the VAD hears speech begin, so the
connection is set up while the caller is still talking, receives only that speech (with its pre-roll), and is closed
when their turn ends. Azure bills every second streamed, silence included: streaming the whole call would cost
several times more than what the caller says (docs/cost.md, "Free grants and caveats"), and the gateway counts both.

The SDK calls back on its own threads; results are handed to the event loop with `call_soon_threadsafe`. Its
blocking calls (start, stop) run on the executor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from media_gateway.stt.base import STT_SAMPLE_RATE, Stt, SttError, SttStream

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)

#: How long after the end of the caller's audio we wait for the final result.
FINAL_RESULT_TIMEOUT = 10.0


def speech_config(settings: Settings) -> Any:  # -> speechsdk.SpeechConfig
    """SpeechConfig from SPEECH_KEY with SPEECH_ENDPOINT or SPEECH_REGION, or managed identity with SPEECH_ENDPOINT."""
    import azure.cognitiveservices.speech as speechsdk

    if settings.speech_key:
        if settings.speech_endpoint:
            return speechsdk.SpeechConfig(subscription=settings.speech_key, endpoint=settings.speech_endpoint)
        return speechsdk.SpeechConfig(subscription=settings.speech_key, region=settings.speech_region)
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None)
    return speechsdk.SpeechConfig(token_credential=credential, endpoint=settings.speech_endpoint)


class AzureSpeechStt(Stt):
    name = "azure-speech"

    def __init__(self, settings: Settings, executor: Executor) -> None:
        self._config = speech_config(settings)
        self._language = settings.speech_language
        self._executor = executor

    def stream(self, vocabulary: Sequence[str] = ()) -> SttStream:
        return _AzureStream(self._config, self._language, self._executor, vocabulary)


class _AzureStream(SttStream):
    def __init__(self, config: Any, language: str, executor: Executor, vocabulary: Sequence[str] = ()) -> None:
        import azure.cognitiveservices.speech as speechsdk

        self._sdk = speechsdk
        self._loop = asyncio.get_running_loop()
        self._executor = executor
        self._texts: list[str] = []
        self._hypothesis = ""  # the service's partial result for the phrase it is hearing now
        self._error: str | None = None
        self._stopped = asyncio.Event()
        audio_format = speechsdk.audio.AudioStreamFormat(
            samples_per_second=STT_SAMPLE_RATE, bits_per_sample=16, channels=1
        )
        self._push = speechsdk.audio.PushAudioInputStream(stream_format=audio_format)
        self._recognizer = speechsdk.SpeechRecognizer(
            speech_config=config, audio_config=speechsdk.audio.AudioConfig(stream=self._push), language=language
        )
        if vocabulary:  # the scenario's names, as a phrase list the service biases recognition towards
            phrases = speechsdk.PhraseListGrammar.from_recognizer(self._recognizer)
            for phrase in vocabulary:
                phrases.addPhrase(phrase)
        self._recognizer.recognized.connect(self._on_recognized)
        self._recognizer.recognizing.connect(self._on_recognizing)
        self._recognizer.canceled.connect(self._on_canceled)
        self._recognizer.session_stopped.connect(lambda _event: self._loop.call_soon_threadsafe(self._stopped.set))
        start = self._recognizer.start_continuous_recognition_async
        self._started = self._loop.run_in_executor(executor, lambda: start().get())
        self._closed = False

    # SDK threads ------------------------------------------------------------------------------------------------

    def _on_recognized(self, event: Any) -> None:
        if event.result.reason == self._sdk.ResultReason.RecognizedSpeech and event.result.text:
            self._loop.call_soon_threadsafe(self._recognized, event.result.text)

    def _on_recognizing(self, event: Any) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_hypothesis", event.result.text or "")

    def _on_canceled(self, event: Any) -> None:
        details = event.cancellation_details
        if details.reason == self._sdk.CancellationReason.Error:
            message = f"{details.code}: {details.error_details}".split("\n")[0]
            self._loop.call_soon_threadsafe(self._fail, message)
        self._loop.call_soon_threadsafe(self._stopped.set)

    def _recognized(self, text: str) -> None:
        self._texts.append(text)
        self._hypothesis = ""

    def _fail(self, message: str) -> None:
        self._error = message

    # The port ---------------------------------------------------------------------------------------------------

    async def push(self, pcm: bytes) -> None:
        if not self._closed:
            self._push.write(pcm)  # copies into the SDK's buffer; does not block

    async def partial(self) -> str:
        """What the service has recognised so far, with its partial result for the phrase in progress (continuous
        recognition streams them as the caller speaks: nothing waits here)."""
        return " ".join([*self._texts, self._hypothesis]).strip()

    async def finish(self) -> str:
        self._close_input()
        try:
            await self._started
            await asyncio.wait_for(self._stopped.wait(), FINAL_RESULT_TIMEOUT)
        except asyncio.TimeoutError:
            raise SttError("Azure speech-to-text sent no final result in time", retryable=True) from None
        finally:
            await self._stop()
        if self._error is not None:
            raise SttError(f"Azure speech-to-text failed: {self._error}", retryable=True)
        return " ".join(self._texts)

    async def aclose(self) -> None:
        self._close_input()
        await self._stop()

    def _close_input(self) -> None:
        if not self._closed:
            self._closed = True
            self._push.close()  # end of audio: the service finalises what it heard

    async def _stop(self) -> None:
        try:
            await self._loop.run_in_executor(
                self._executor, lambda: self._recognizer.stop_continuous_recognition_async().get()
            )
        except RuntimeError as exc:  # the SDK raises RuntimeError when the session is already gone
            log.debug("stopping recognition: %s", exc)
