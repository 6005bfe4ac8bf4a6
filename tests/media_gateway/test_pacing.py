"""Reply audio on the process's pacing clock, and the replica's figures added up from its workers.

The pacer is driven here with explicit times, the clock's own tick times, so what is checked is the schedule itself,
not how punctual this machine is.
"""

from __future__ import annotations

import asyncio
import time

from media_gateway.frames import ReplyEndFrame, TtsAudioFrame
from media_gateway.metrics import GatewayStats, merge_snapshots
from media_gateway.pacing import LEAD_FRAMES, Pacer, PacingClock
from media_gateway.reply import ReplyHandle

FRAME = 640


async def test_a_stretch_leaves_its_burst_at_once_then_one_frame_on_each_tick_never_late() -> None:
    sent: list[bytes] = []

    async def send(pcm: bytes) -> None:
        sent.append(pcm)

    stats, reply = GatewayStats(), ReplyHandle()
    pacer = Pacer(FRAME, send, stats)
    clock = PacingClock.of_running_loop()
    frames = [bytes([i]) * FRAME for i in range(12)]
    pacer.put(TtsAudioFrame(b"".join(frames), reply, reply.begin_clause("hello there", "agent")))
    pacer.put(ReplyEndFrame(reply))
    # Between two ticks, well ahead of now: the loop's clock may have run since long before this test (the tests share
    # one loop), and a tick it passed minutes ago would make every frame "late" by the time it is sent.
    start = clock.time_of(clock.tick_at(time.monotonic()) + 1000) + 0.0137
    await pacer.send_due(start)
    assert sent == frames[: LEAD_FRAMES + 1]  # the jitter buffer goes at once
    first_tick = clock.tick_at(start) + 1
    for k in range(len(frames) - LEAD_FRAMES - 1):
        tick = first_tick + k
        await pacer.send_due(clock.time_of(tick), tick)  # exactly on the tick, as the clock computes it
        assert sent == frames[: LEAD_FRAMES + 2 + k], f"tick {k}: a frame due on it stayed"
    assert stats.frames_sent == len(frames) and stats.lateness_ms(1.0) <= 0.1  # none late: all in the first bucket
    await asyncio.wait_for(reply.wait_for_playout(), 1)  # played out
    assert not pacer.playing  # and off the clock
    pacer.stop()


def test_the_replicas_lateness_percentiles_are_those_of_all_its_workers_frames() -> None:
    """Merged bucket by bucket, not averaged: one worker's bad p99 is the replica's if it sent most frames."""
    quick, slow, everything = GatewayStats(), GatewayStats(), GatewayStats()
    slow.worker = 1
    for lateness_ms, count, worker in ((0.3, 900, quick), (0.3, 100, slow), (12.0, 40, slow)):
        for _ in range(count):
            worker.frame_sent(lateness_ms / 1000)
            everything.frame_sent(lateness_ms / 1000)
    down = {"worker": {"index": 2, "up": False, "error": "connection refused"}}
    merged = merge_snapshots([quick.snapshot(), slow.snapshot(), down])
    assert merged["frame_lateness_ms"] == everything.snapshot()["frame_lateness_ms"]
    assert merged["frame_lateness_ms"]["p99"] > 5 > quick.snapshot()["frame_lateness_ms"]["p99"]
    assert merged["frames_sent"] == 1040
    assert [(w["index"], w["up"]) for w in merged["workers"]] == [(0, True), (1, True), (2, False)]
