"""One call: the ACS media WebSocket, the guard on what it sends, and the call's pipeline.

    caller audio -> echo canceller -> VAD -> speech-to-text -> agent (conversation core) -> TTS -> output -> ACS
                          ^---------------------- what the output sent ---------------------------'

The pipeline is built when AudioMetadata says the audio format and the gateway has a slot for one more
conversation; until it has, the caller is on hold and hears hold music (hold.py). The call ends when ACS closes the
socket, when the conversation asks (the hooks in hooks.py hang up through the function app), or when the peer breaks
the protocol: malformed messages, audio before its metadata, or audio faster than real time (a flood) drop this
call, and only this call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import WSMsgType, web

from media_gateway.agent import AgentProcessor
from media_gateway.echo import EchoCanceller
from media_gateway.endpoint import EndOfTurn, number_shapes
from media_gateway.frames import AudioMetadataFrame, DtmfFrame, Frame, InputAudioFrame, OutputAudioFrame
from media_gateway.hold import CallSlots, count_held, play_hold_music
from media_gateway.hooks import CallHooks, CallRef
from media_gateway.metrics import CallMeter, GatewayStats
from media_gateway.output import OutputProcessor
from media_gateway.processor import Pipeline, cancel_and_wait
from media_gateway.serializer import STOP_AUDIO, AcsMediaSerializer, ProtocolError
from media_gateway.speak import TtsProcessor
from media_gateway.transcribe import SttProcessor
from media_gateway.vad import Judge, VadParams, VadProcessor
from media_gateway.voicemail import BeepListener, Screen

if TYPE_CHECKING:
    from media_gateway.engines import Engines
    from shared.conversation import Conversation
    from shared.stores.base import SessionState

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011


class FloodGuard:
    """Drops a peer that sends more than a media stream does: audio faster than real time, or too many messages.

    ACS sends one 20 ms AudioData every 20 ms. What counts is the total since the call began against the time it
    has lasted, plus a burst: a backlog delivered at once after a network stall (or while this process was busy) is
    still real time on the whole, while a sender that outruns the clock is not a phone call, and would make this
    call eat the CPU the others need.
    """

    def __init__(
        self, burst_seconds: float = 2.0, messages_per_second: float = 100.0, message_burst: float = 200.0
    ) -> None:
        self._started = time.monotonic()
        self._burst = burst_seconds
        self._message_rate, self._message_burst = messages_per_second, message_burst
        self._audio = 0.0
        self._messages = 0

    def admit_message(self) -> None:
        self._messages += 1
        if self._messages > self._elapsed() * self._message_rate + self._message_burst:
            raise ProtocolError("more messages than a media stream sends", POLICY_VIOLATION)

    def admit_audio(self, seconds: float) -> None:
        self._audio += seconds
        if self._audio > self._elapsed() + self._burst:
            raise ProtocolError("audio arriving faster than real time", POLICY_VIOLATION)

    def _elapsed(self) -> float:
        return time.monotonic() - self._started


class Call:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        ref: CallRef,
        conversation: Conversation,
        engines: Engines,
        hooks: CallHooks,
        stats: GatewayStats,
        vad_params: VadParams,
        slots: CallSlots | None = None,
        state: SessionState | None = None,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self.ref = ref
        self._ws = ws
        self._conversation = conversation
        self._engines = engines
        self._hooks = hooks
        self._stats = stats
        self._vad_params = vad_params
        self._serializer = AcsMediaSerializer()
        self._guard = FloodGuard()
        self._meter = CallMeter(stats)
        self._pipeline: Pipeline | None = None
        self._echo: EchoCanceller | None = None
        self._sample_rate = 0
        self._slots = slots or CallSlots(1 << 30)
        self._state = state if state is not None else conversation.state
        self._transport = transport  # the socket's, for how much output still waits in it
        self._has_slot = False
        self._live = False
        self._holding: asyncio.Task[None] | None = None
        self._end = asyncio.Event()
        self._end_reason = ""
        self._failure: BaseException | None = None

    def request_end(self, reason: str) -> None:
        """End the call once the current reply has been played (called by the agent stage)."""
        if not self._end.is_set():
            self._end_reason = reason
            self._end.set()

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        self.request_end("internal error")

    async def run(self) -> None:
        """Serve the call until it ends; never raises for the call's own failures (they are logged)."""
        self._stats.call_started()
        started = time.monotonic()
        log.info("call %s: media connected (session %s)", self.ref.call_id, self.ref.session_id)
        reader = asyncio.create_task(self._read(), name=f"call {self.ref.call_id} read")
        ending = asyncio.create_task(self._end.wait(), name=f"call {self.ref.call_id} end")
        dropped = False
        try:
            await asyncio.wait({reader, ending}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and (exc := reader.exception()) is not None:
                dropped = True
                code = exc.close_code if isinstance(exc, ProtocolError) else INTERNAL_ERROR
                log.warning("call %s dropped: %s", self.ref.call_id, exc, exc_info=not isinstance(exc, ProtocolError))
                await self._ws.close(code=code, message=str(exc)[:120].encode())
            elif ending.done():
                dropped = self._failure is not None
                await self._finish()
        finally:
            await cancel_and_wait(reader)
            await cancel_and_wait(ending)
            await cancel_and_wait(self._holding)
            if self._pipeline is not None:
                await self._pipeline.stop()
            if self._has_slot:
                self._slots.release()
            self._stats.call_ended(dropped)
            log.info(
                "call %s: media closed after %.0f s; %s; %s",
                self.ref.call_id, time.monotonic() - started, self._meter.summary(),
                self._echo.summary() if self._echo is not None else "no conversation",
            )

    async def _finish(self) -> None:
        if self._failure is None:
            try:
                await self._hooks.end_call(self.ref, self._end_reason)
            except Exception:  # the socket still closes; ACS ends the call when its media stream goes
                log.exception("call %s: ending the call failed", self.ref.call_id)
            await self._ws.close(code=1000, message=self._end_reason[:120].encode())
        else:
            await self._ws.close(code=INTERNAL_ERROR, message=b"internal error")

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is WSMsgType.TEXT:
                self._guard.admit_message()
                frame = self._serializer.deserialize(message.data)
                if frame is not None:
                    await self._handle(frame)
            elif message.type is WSMsgType.BINARY:
                raise ProtocolError("binary message: the media stream sends JSON text", 1003)
            elif message.type is WSMsgType.ERROR:
                raise ProtocolError(f"WebSocket error: {self._ws.exception()}", INTERNAL_ERROR)

    async def _handle(self, frame: Frame) -> None:
        if isinstance(frame, InputAudioFrame):
            if not self._sample_rate:
                raise ProtocolError("AudioData before AudioMetadata")
            self._guard.admit_audio(len(frame.pcm) / 2 / self._sample_rate)
            if self._live and self._pipeline is not None:  # not while on hold: nobody is listening yet
                await self._pipeline.process_frame(frame)
        elif isinstance(frame, AudioMetadataFrame):
            if not self._sample_rate:
                await self._start(frame.sample_rate)
            elif frame.sample_rate != self._sample_rate:
                raise ProtocolError("AudioMetadata changed the sample rate mid-call")
        elif isinstance(frame, DtmfFrame):
            if self._live and self._pipeline is not None:  # keys pressed on hold reach nobody, like its audio
                await self._pipeline.process_frame(frame)

    async def _start(self, sample_rate: int) -> None:
        self._sample_rate = sample_rate
        if self._slots.try_take():
            self._has_slot = True
            await self._converse()
            return
        log.info("call %s: the gateway carries its %d calls: on hold", self.ref.call_id, self._slots.limit)
        self._holding = asyncio.create_task(self._hold(), name=f"call {self.ref.call_id} hold")
        self._holding.add_done_callback(self._held)

    async def _hold(self) -> None:
        """Hold music, counted on hold, until a slot frees; then the conversation begins."""
        held_since = time.monotonic()
        music = asyncio.create_task(play_hold_music(self._send_audio, self._sample_rate), name="hold music")
        counted = asyncio.create_task(count_held(self._state, self.ref.call_id), name="count held")
        try:
            await self._slots.take()
            self._has_slot = True
        finally:
            await cancel_and_wait(music)
            await cancel_and_wait(counted)
        await self._send(STOP_AUDIO)  # ACS may still have a few frames of the tune queued
        log.info("call %s: off hold after %.0f s", self.ref.call_id, time.monotonic() - held_since)
        await self._converse()

    def _held(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("call %s: taking it off hold failed", self.ref.call_id, exc_info=exc)
            self._fail(exc)

    async def _send_audio(self, pcm: bytes) -> None:
        await self._send(self._serializer.serialize(OutputAudioFrame(pcm)))

    async def _send(self, message: str | None) -> None:
        if message is None:
            return
        try:
            await self._ws.send_str(message)
        except ConnectionResetError:  # the caller hung up: the reader sees the close and ends the call
            pass

    def _judge(self, stt: SttProcessor) -> Judge | None:
        """At a pause: has the caller finished? The end-of-turn model on their voice and the words so far
        (endpoint.py). The model runs on the inference threads: on the VAD's it would hold up every call's VAD."""
        if self._vad_params.pause_ms is None:
            return None
        end_of_turn = EndOfTurn(self._engines.turn, self._engines.inference_executor,
                                number_shapes(self._conversation.scenario))

        async def finished(audio: np.ndarray) -> bool:
            verdict = await end_of_turn.judge(audio, stt.partial)
            self._meter.judged(verdict.finished)
            return verdict.finished

        return finished

    def _backlog(self) -> int:
        size = getattr(self._transport, "get_write_buffer_size", None)  # uvloop's transports are not asyncio's types
        return size() if size is not None else 0

    async def _converse(self) -> None:
        engines, call_id, sample_rate = self._engines, self.ref.call_id, self._sample_rate
        stt = SttProcessor(engines.stt, self._meter, call_id, self._conversation.scenario.voice.vocabulary)
        echo = self._echo = EchoCanceller(sample_rate)  # the reply the output sends, out of what the VAD hears
        screen = Screen(sample_rate) if self.ref.outbound else None  # a call we placed: who picked up?
        pipeline = Pipeline([
            *([BeepListener(screen)] if screen is not None else []),
            VadProcessor(engines.vad, engines.vad_executor, sample_rate, self._meter, self._vad_params,
                         judge=self._judge(stt), echo=echo),
            stt,
            AgentProcessor(self._conversation, self.ref, self._hooks, self._stats, self.request_end, screen),
            TtsProcessor(engines.tts, sample_rate, call_id),
            OutputProcessor(self._ws.send_str, self._serializer, sample_rate, self._stats, call_id,
                            backlog=self._backlog, echo=echo),
        ])
        self._pipeline = pipeline  # set first: whatever happens next, the call's end stops it
        await pipeline.start(self._fail)
        self._live = True  # from now on the caller's audio flows in
