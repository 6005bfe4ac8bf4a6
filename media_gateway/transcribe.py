"""The speech-to-text stage: one engine stream per stretch of caller speech, transcripts out in order.

A stream opens when the caller starts speaking and gets only the speech audio the VAD forwards; when their turn ends
the stream is finished on a task this stage owns, so the audio path never waits for a recogniser. Transcripts come
out in the order the caller spoke, one `TranscriptionFrame` per stretch (empty when nothing was recognised).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from media_gateway.frames import (
    Frame,
    SpeechAudioFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from media_gateway.metrics import CallMeter
from media_gateway.processor import FrameProcessor, OnFailure
from media_gateway.stt import STT_SAMPLE_RATE, Stt, SttError, SttStream, normalize_transcript

log = logging.getLogger(__name__)


class SttProcessor(FrameProcessor):
    def __init__(self, stt: Stt, meter: CallMeter, call_id: str, vocabulary: Sequence[str] = ()) -> None:
        super().__init__()
        self._stt = stt
        self._vocabulary = tuple(vocabulary)
        self._meter = meter
        self._call_id = call_id
        self._stream: SttStream | None = None
        self._finishing: asyncio.Queue[tuple[SttStream, UserStoppedSpeakingFrame]] = asyncio.Queue()
        self._abandoned: list[SttStream] = []

    async def start(self, on_failure: OnFailure) -> None:
        await super().start(on_failure)
        self.create_task(self._transcribe_in_order(), "transcribe")

    async def stop(self) -> None:
        await super().stop()
        streams = [s for s in (self._stream, *self._abandoned) if s is not None]
        while not self._finishing.empty():
            streams.append(self._finishing.get_nowait()[0])
        for stream in streams:
            await stream.aclose()

    async def partial(self) -> str:
        """What the caller has said so far in this turn ("" between turns, or if the engine fails: the end-of-turn
        judge then goes by the sound alone)."""
        stream = self._stream
        if stream is None:
            return ""
        try:
            return normalize_transcript(await stream.partial())
        except SttError as exc:
            log.info("call %s: no partial transcript at a pause: %s", self._call_id, exc)
            return ""

    async def process_frame(self, frame: Frame) -> None:
        if isinstance(frame, UserStartedSpeakingFrame):
            self._stream = self._stt.stream(self._vocabulary)
        elif isinstance(frame, SpeechAudioFrame):
            if self._stream is not None:
                await self._stream.push(frame.pcm)
                self._meter.sent_to_stt(len(frame.pcm) / 2 / STT_SAMPLE_RATE)
            return
        elif isinstance(frame, UserStoppedSpeakingFrame) and self._stream is not None:
            self._finishing.put_nowait((self._stream, frame))
            self._stream = None
        await self.push_frame(frame)

    async def _transcribe_in_order(self) -> None:
        while True:
            stream, stopped = await self._finishing.get()
            self._abandoned.append(stream)  # closed by stop() if we are cancelled while it finishes
            failed = False
            try:
                text = await stream.finish()
            except SttError as exc:
                log.warning("call %s: speech-to-text failed, the caller will be asked again: %s", self._call_id, exc)
                text, failed = "", True
            finally:
                self._abandoned.remove(stream)
            await self.push_frame(
                TranscriptionFrame(
                    text=normalize_transcript(text),
                    speech_ended_at=stopped.speech_ended_at,
                    end_of_turn_at=stopped.detected_at,
                    transcribed_at=time.monotonic(),
                    failed=failed,
                )
            )
