"""The TTS stage: reply text in, synthesized audio out, a clause at a time.

Reply text arrives in pieces as the conversation core produces it; the splitter hands TTS the first clause as soon
as it is complete, so the caller hears the start of a reply while the rest is still being written and synthesized.
A worker task synthesizes clauses in order, a little ahead of playback (the output stage paces them): no more than
`LOOKAHEAD_SECONDS` of a reply waits unplayed, so a caller who cuts in has not had CPU (or, with a cloud voice,
billed characters) spent on words nobody will hear, and the synthesis of a long reply does not compete with the
speech-to-text of the caller's next turn. On an interruption, queued clauses of the interrupted reply are dropped and
a synthesis in progress for it is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time

from media_gateway.audio import frame_bytes
from media_gateway.frames import Frame, InterruptionFrame, ReplyEndFrame, TextFrame, TtsAudioFrame
from media_gateway.processor import FrameProcessor, OnFailure
from media_gateway.reply import ReplyHandle
from media_gateway.splitter import ClauseSplitter
from media_gateway.tts import Tts, TtsError

log = logging.getLogger(__name__)

#: How much synthesized, unplayed audio of a reply may wait before the next clause is synthesized.
LOOKAHEAD_SECONDS = 2.0
_ROOM_POLL_SECONDS = 0.05

_Work = tuple[ReplyHandle, str, str] | ReplyEndFrame  # (reply, clause text, agent) or the end of a reply


class TtsProcessor(FrameProcessor):
    def __init__(self, tts: Tts, sample_rate: int, call_id: str) -> None:
        super().__init__()
        self._tts = tts
        self._rate = sample_rate
        self._frame_bytes = frame_bytes(sample_rate)
        self._call_id = call_id
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        self._splitters: dict[ReplyHandle, tuple[ClauseSplitter, str]] = {}  # reply -> (splitter, agent speaking)
        self._speaking: ReplyHandle | None = None  # the reply being synthesized now
        self._worker: asyncio.Task[None] | None = None

    async def start(self, on_failure: OnFailure) -> None:
        await super().start(on_failure)
        self._worker = self.create_task(self._speak(), "speak")

    async def process_frame(self, frame: Frame) -> None:
        if isinstance(frame, TextFrame):
            if not frame.reply.interrupted:
                self._split(frame)
        elif isinstance(frame, ReplyEndFrame):
            splitter, agent = self._splitters.pop(frame.reply, (None, ""))
            if splitter is not None and not frame.reply.interrupted:
                self._enqueue(frame.reply, splitter.flush(), agent)
            self._queue.put_nowait(frame)
        elif isinstance(frame, InterruptionFrame):
            await self._interrupt()
            await self.push_frame(frame)
        else:
            await self.push_frame(frame)

    def _split(self, frame: TextFrame) -> None:
        splitter, agent = self._splitters.get(frame.reply, (None, frame.agent))
        if splitter is None:
            splitter = ClauseSplitter()
        elif agent != frame.agent:  # another agent takes over mid-reply: what the last one said is complete
            self._enqueue(frame.reply, splitter.flush(), agent)
            splitter = ClauseSplitter()
        self._splitters[frame.reply] = (splitter, frame.agent)
        self._enqueue(frame.reply, splitter.feed(frame.text), frame.agent)

    def _enqueue(self, reply: ReplyHandle, pieces: list[str], agent: str) -> None:
        for piece in pieces:
            self._queue.put_nowait((reply, piece, agent))

    async def _interrupt(self) -> None:
        kept: list[_Work] = []
        while not self._queue.empty():
            work = self._queue.get_nowait()
            if not (work.reply if isinstance(work, ReplyEndFrame) else work[0]).interrupted:
                kept.append(work)
        for work in kept:
            self._queue.put_nowait(work)
        self._splitters = {reply: split for reply, split in self._splitters.items() if not reply.interrupted}
        if self._speaking is not None and self._speaking.interrupted:
            await self.cancel_task(self._worker)  # the engine may be mid-clause: stop waiting for it
            self._speaking = None
            self._worker = self.create_task(self._speak(), "speak")

    async def _speak(self) -> None:
        while True:
            work = await self._queue.get()
            if isinstance(work, ReplyEndFrame):
                await self.push_frame(work)
                continue
            reply, text, agent = work
            if reply.interrupted:
                continue
            self._speaking = reply
            await self._wait_for_room(reply)
            if not reply.interrupted:
                await self._synthesize(reply, text, agent)
            self._speaking = None

    async def _wait_for_room(self, reply: ReplyHandle) -> None:
        limit = LOOKAHEAD_SECONDS * self._rate
        while not reply.interrupted and sum(c.queued_samples - c.played_samples for c in reply.clauses) > limit:
            await asyncio.sleep(_ROOM_POLL_SECONDS)

    async def _synthesize(self, reply: ReplyHandle, text: str, agent: str) -> None:
        clause = reply.begin_clause(text, agent)
        metrics = reply.metrics
        if metrics is not None and metrics.first_clause_at is None:
            metrics.first_clause_at = time.monotonic()
        carry = b""
        try:
            async for pcm in self._tts.synthesize(text, self._rate):
                if reply.interrupted:
                    return
                if metrics is not None and metrics.first_tts_audio_at is None:
                    metrics.first_tts_audio_at = time.monotonic()
                audio = carry + pcm
                whole = len(audio) // self._frame_bytes * self._frame_bytes
                audio, carry = audio[:whole], audio[whole:]
                if audio:
                    clause.queued_samples += len(audio) // 2
                    await self.push_frame(TtsAudioFrame(audio, reply, clause))
        except TtsError as exc:
            log.warning("call %s: TTS failed on a %d-character clause, skipping it: %s", self._call_id, len(text), exc)
        if carry and not reply.interrupted:  # the clause's last partial frame, padded with silence
            carry += bytes(self._frame_bytes - len(carry))
            clause.queued_samples += len(carry) // 2
            await self.push_frame(TtsAudioFrame(carry, reply, clause))
        clause.synthesized = not reply.interrupted
