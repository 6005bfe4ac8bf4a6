"""Azure AI Speech neural text-to-speech (azure-cognitiveservices-speech), streamed as it is synthesized.

The service renders raw PCM at the call's rate directly (no resampling), and audio is read from the result stream
chunk by chunk as it arrives, so the first audio of a clause leaves before the clause is fully synthesized. The
SDK's reads block, so they run on the executor.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from media_gateway.stt.azure_speech import speech_config
from media_gateway.tts.base import Tts, TtsError

if TYPE_CHECKING:
    from shared.settings import Settings

#: Bytes per read from the result stream: 100 ms at 16 kHz.
READ_BYTES = 3200


class AzureSpeechTts(Tts):
    name = "azure-speech"

    def __init__(self, settings: Settings, executor: Executor) -> None:
        self._settings = settings
        self._executor = executor
        self._configs: dict[int, Any] = {}

    def _config(self, sample_rate: int) -> Any:
        import azure.cognitiveservices.speech as speechsdk

        if sample_rate not in self._configs:
            config = speech_config(self._settings)
            config.speech_synthesis_voice_name = self._settings.speech_voice
            config.set_speech_synthesis_output_format(
                {16000: speechsdk.SpeechSynthesisOutputFormat.Raw16Khz16BitMonoPcm,
                 24000: speechsdk.SpeechSynthesisOutputFormat.Raw24Khz16BitMonoPcm}[sample_rate]
            )
            self._configs[sample_rate] = config
        return self._configs[sample_rate]

    async def _synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        import azure.cognitiveservices.speech as speechsdk

        loop = asyncio.get_running_loop()
        synthesizer = speechsdk.SpeechSynthesizer(speech_config=self._config(sample_rate), audio_config=None)
        result = await loop.run_in_executor(self._executor, lambda: synthesizer.start_speaking_text_async(text).get())
        stream = speechsdk.AudioDataStream(result)
        try:
            while True:
                buffer = bytes(READ_BYTES)
                read = await loop.run_in_executor(self._executor, stream.read_data, buffer)
                if not read:
                    break
                yield buffer[:read]
        finally:
            if stream.status != speechsdk.StreamStatus.AllData:
                synthesizer.stop_speaking_async()  # a cancelled reply: stop the service rendering the rest
        if stream.status == speechsdk.StreamStatus.Canceled:
            details = stream.cancellation_details
            message = f"{details.error_code}: {details.error_details}".split("\n")[0]
            retryable = details.reason == speechsdk.CancellationReason.Error
            raise TtsError(f"Azure TTS failed: {message}", retryable=retryable)
