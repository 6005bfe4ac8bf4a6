"""What the gateway measures: per-turn latencies, barge-in reaction, frame pacing, and speech-to-text spend.

Each turn is logged as one line and recorded on OpenTelemetry instruments (opentelemetry-api: they do nothing until
the process has a MeterProvider, see `configure_exporter`). The same figures are kept in memory for `GET /stats`,
which the benchmark reads.

Cloud speech-to-text bills every second streamed to it, silence included (docs/cost.md, "Free grants and caveats"), so
each call counts the seconds of caller audio it received and the seconds it sent to speech-to-text.

Several workers on one replica (workers.py) each keep their own figures; `merge_snapshots` adds them up for /stats,
merging the frame-lateness histograms bucket by bucket so the replica's percentiles are exact.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics

log = logging.getLogger(__name__)

#: Recent turns and barge-ins kept for /stats.
RECENT = 2000
#: Frame lateness histogram: 0.1 ms buckets up to 100 ms, then one overflow bucket.
_LATENESS_BUCKET_MS = 0.1
_LATENESS_BUCKETS = 1000
#: Caller audio is counted on the OpenTelemetry counter a second at a time, not 50 times a second a call.
_AUDIO_REPORT_SECONDS = 1.0


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 1)


@dataclass
class TurnMetrics:
    """Timestamps of one caller turn, from the end of their speech to the first audio of the answer."""

    call_id: str
    index: int
    speech_ended_at: float
    end_of_turn_at: float
    transcribed_at: float
    first_text_at: float | None = None  # the conversation core's first reply text
    first_clause_at: float | None = None  # the first clause handed to TTS
    first_tts_audio_at: float | None = None  # TTS returned audio for it
    first_audio_at: float | None = None  # the first 20 ms frame left for the caller
    interrupted: bool = False

    def figures(self) -> dict[str, float | None]:
        return {
            "end_of_speech_to_first_audio_ms": _ms(self.speech_ended_at, self.first_audio_at),
            "end_of_turn_to_first_audio_ms": _ms(self.end_of_turn_at, self.first_audio_at),
            "end_of_turn_wait_ms": _ms(self.speech_ended_at, self.end_of_turn_at),
            "stt_ms": _ms(self.end_of_turn_at, self.transcribed_at),
            "policy_first_text_ms": _ms(self.transcribed_at, self.first_text_at),
            "tts_first_audio_ms": _ms(self.first_clause_at, self.first_tts_audio_at),
        }


class CallMeter:
    """One call's audio accounting: seconds received from the caller and seconds sent to speech-to-text."""

    def __init__(self, stats: GatewayStats) -> None:
        self._stats = stats
        self.received_seconds = 0.0
        self.stt_seconds = 0.0
        self.pauses = 0  # pauses the end-of-turn judge was asked about (endpoint.py)
        self.pauses_ended = 0  # of which it said the caller had finished

    def received(self, seconds: float) -> None:
        self.received_seconds += seconds
        self._stats.audio_received(seconds)

    def sent_to_stt(self, seconds: float) -> None:
        self.stt_seconds += seconds
        self._stats.audio_sent_to_stt(seconds)

    def judged(self, finished: bool) -> None:
        self.pauses += 1
        self.pauses_ended += finished

    def summary(self) -> str:
        share = self.stt_seconds / self.received_seconds * 100 if self.received_seconds else 0.0
        received, sent = self.received_seconds, self.stt_seconds
        pauses = f"; {self.pauses_ended} of {self.pauses} pauses ended a turn" if self.pauses else ""
        return f"{sent:.1f} s of {received:.1f} s of caller audio sent to speech-to-text ({share:.0f}%){pauses}"


class GatewayStats:
    """Process-wide figures, shared by every call."""

    def __init__(self) -> None:
        meter = metrics.get_meter("switchboard.media_gateway")
        self._h_first_audio = meter.create_histogram(
            "gateway.turn.end_of_speech_to_first_audio", unit="ms", description="End of caller speech to reply audio"
        )
        self._h_stt = meter.create_histogram("gateway.turn.stt", unit="ms", description="End of turn to transcript")
        self._h_policy = meter.create_histogram(
            "gateway.turn.policy_first_text", unit="ms", description="Transcript to the first reply text"
        )
        self._h_tts = meter.create_histogram(
            "gateway.turn.tts_first_audio", unit="ms", description="First clause to its first synthesized audio"
        )
        self._h_barge_in = meter.create_histogram(
            "gateway.barge_in.stop_audio", unit="ms", description="Onset of caller speech over a reply to StopAudio"
        )
        self._c_audio_in = meter.create_counter("gateway.audio.received", unit="s", description="Caller audio received")
        self._c_stt_audio = meter.create_counter(
            "gateway.audio.sent_to_stt", unit="s", description="Caller audio sent to speech-to-text"
        )
        self._c_calls = meter.create_up_down_counter("gateway.calls.active", description="Calls in progress")
        self.worker = 0  # index of this process among the replica's workers
        self.calls_active = 0
        self.calls_total = 0
        self.calls_dropped = 0
        self.frames_sent = 0
        self.audio_in_seconds = 0.0
        self._audio_unreported = 0.0
        self.stt_seconds = 0.0
        self.turns: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.barge_ins_ms: deque[float] = deque(maxlen=RECENT)
        self._lateness = [0] * (_LATENESS_BUCKETS + 1)
        self._lateness_max = 0.0

    # Calls --------------------------------------------------------------------------------------------------------

    def call_started(self) -> None:
        self.calls_active += 1
        self.calls_total += 1
        self._c_calls.add(1)

    def call_ended(self, dropped: bool) -> None:
        self.calls_active -= 1
        self.calls_dropped += dropped
        self._c_calls.add(-1)

    def audio_received(self, seconds: float) -> None:
        self.audio_in_seconds += seconds
        self._audio_unreported += seconds
        if self._audio_unreported >= _AUDIO_REPORT_SECONDS:
            self._c_audio_in.add(self._audio_unreported)
            self._audio_unreported = 0.0

    def audio_sent_to_stt(self, seconds: float) -> None:
        self.stt_seconds += seconds
        self._c_stt_audio.add(seconds)

    # Turns --------------------------------------------------------------------------------------------------------

    def turn(self, turn: TurnMetrics) -> None:
        figures = turn.figures()
        self.turns.append({"call": turn.call_id, "turn": turn.index, "interrupted": turn.interrupted, **figures})
        for histogram, key in (
            (self._h_first_audio, "end_of_speech_to_first_audio_ms"),
            (self._h_stt, "stt_ms"),
            (self._h_policy, "policy_first_text_ms"),
            (self._h_tts, "tts_first_audio_ms"),
        ):
            if figures[key] is not None:
                histogram.record(figures[key])
        log.info(
            "call %s turn %d: end of speech -> first audio %s ms (end-of-turn wait %s, speech-to-text %s, "
            "policy to first text %s, TTS to first audio %s)%s",
            turn.call_id, turn.index, _show(figures["end_of_speech_to_first_audio_ms"]),
            _show(figures["end_of_turn_wait_ms"]), _show(figures["stt_ms"]), _show(figures["policy_first_text_ms"]),
            _show(figures["tts_first_audio_ms"]), " (interrupted)" if turn.interrupted else "",
        )

    def barge_in(self, call_id: str, onset_to_stop_ms: float) -> None:
        self.barge_ins_ms.append(onset_to_stop_ms)
        self._h_barge_in.record(onset_to_stop_ms)
        log.info("call %s: caller talked over the reply; StopAudio %.0f ms after they began", call_id, onset_to_stop_ms)

    # Pacing -------------------------------------------------------------------------------------------------------

    def frame_sent(self, lateness_seconds: float) -> None:
        """One 20 ms frame went out `lateness_seconds` after its deadline (cheap: called 50 times a second a call)."""
        self.frames_sent += 1
        late_ms = max(0.0, lateness_seconds * 1000)
        self._lateness[min(int(late_ms / _LATENESS_BUCKET_MS), _LATENESS_BUCKETS)] += 1
        if late_ms > self._lateness_max:
            self._lateness_max = late_ms

    def lateness_ms(self, quantile: float) -> float:
        return _quantile_ms(self._lateness, quantile, self._lateness_max)

    def reset_pacing(self) -> None:
        self._lateness = [0] * (_LATENESS_BUCKETS + 1)
        self._lateness_max = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": {"active": self.calls_active, "total": self.calls_total, "dropped": self.calls_dropped},
            "frames_sent": self.frames_sent,
            "frame_lateness_ms": {
                "p50": self.lateness_ms(0.5),
                "p99": self.lateness_ms(0.99),
                "max": round(self._lateness_max, 1),
                "frames": sum(self._lateness),
            },
            "frame_lateness_buckets": {str(bucket): count for bucket, count in enumerate(self._lateness) if count},
            "audio_seconds": {"received": round(self.audio_in_seconds, 2), "sent_to_stt": round(self.stt_seconds, 2)},
            "turns": list(self.turns),
            "barge_in_stop_audio_ms": list(self.barge_ins_ms),
            "worker": {"index": self.worker, "pid": os.getpid(), "up": True,
                       "cpu_seconds": round(time.process_time(), 3)},
        }


def merge_snapshots(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """One replica's figures from its workers' snapshots; `workers` lists each (a worker that did not answer too)."""
    up = [s for s in snapshots if s["worker"].get("up")]
    buckets: Counter[int] = Counter()
    for snapshot in up:
        buckets.update({int(bucket): count for bucket, count in snapshot["frame_lateness_buckets"].items()})
    histogram = [buckets.get(bucket, 0) for bucket in range(_LATENESS_BUCKETS + 1)]
    maximum = max((s["frame_lateness_ms"]["max"] for s in up), default=0.0)

    def total(section: str, key: str) -> Any:
        return sum(s[section][key] for s in up)

    return {
        "calls": {key: total("calls", key) for key in ("active", "total", "dropped")},
        "frames_sent": sum(s["frames_sent"] for s in up),
        "frame_lateness_ms": {"p50": _quantile_ms(histogram, 0.5, maximum),
                              "p99": _quantile_ms(histogram, 0.99, maximum), "max": maximum, "frames": sum(histogram)},
        "frame_lateness_buckets": {str(bucket): count for bucket, count in sorted(buckets.items())},
        "audio_seconds": {key: round(total("audio_seconds", key), 2) for key in ("received", "sent_to_stt")},
        "turns": [turn for s in up for turn in s["turns"]],
        "barge_in_stop_audio_ms": [ms for s in up for ms in s["barge_in_stop_audio_ms"]],
        "workers": sorted(
            ({**s["worker"], "calls_active": s["calls"]["active"], "frames_sent": s["frames_sent"]} if s in up
             else s["worker"] for s in snapshots),
            key=lambda worker: worker["index"],
        ),
    }


def _quantile_ms(histogram: list[int], quantile: float, maximum: float) -> float:
    total = sum(histogram)
    if not total:
        return 0.0
    rank, seen = quantile * total, 0
    for bucket, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return round((bucket + 1) * _LATENESS_BUCKET_MS, 1)
    return round(maximum, 1)


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def configure_exporter() -> str | None:
    """Give the process its OpenTelemetry providers when an exporter is configured (shared/telemetry/export.py):
    Application Insights, OTLP, or console / JSON-lines file. Returns which, or None: then the instruments are
    no-ops and the per-turn log lines remain."""
    from shared.telemetry import export

    return ", ".join(export.configure("switchboard-media-gateway")) or None
