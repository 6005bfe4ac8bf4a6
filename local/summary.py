"""The live summary `make run` prints: one line every SWITCHBOARD_SUMMARY_SECONDS, only when something happened.

    · last 10s: webchat 4 turns p50 82 ms · whatsapp 2 turns p50 150 ms · voice 1 call, 3 turns p50 1.2 s
      · handoffs 1 started, 1 engaged · dedup 3 · errors 0

The text channels' figures come from the function app's own metrics (shared/telemetry), read in-process by an
OpenTelemetry metric reader with delta temporality, so each read is exactly the last window. Voice turns happen in
the media gateway, another process: its `GET /stats` (loopback) is polled for the calls and turns since last time.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from typing import Any, Callable

import aiohttp
from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter, ObservableUpDownCounter, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation

from shared import telemetry

log = logging.getLogger("local.summary")

#: Histogram buckets for the summary's percentiles: 25% apart from 1 ms to about 10 minutes.
BOUNDARIES = tuple(round(1.25**i, 3) for i in range(60))
_STATS_TIMEOUT = aiohttp.ClientTimeout(total=2)


class LiveSummary:
    """A local service (local/__main__.py): `reader` goes to the MeterProvider; `start` prints every `interval`."""

    name = "live summary"

    def __init__(self, interval: float, gateway_stats_url: str | None = None, out: Callable[[str], None] | None = None):
        delta = AggregationTemporality.DELTA
        self.reader = InMemoryMetricReader(
            preferred_temporality={Counter: delta, UpDownCounter: delta, Histogram: delta,
                                   ObservableCounter: delta, ObservableUpDownCounter: delta},
            preferred_aggregation={Histogram: ExplicitBucketHistogramAggregation(BOUNDARIES)},
        )
        self.interval = interval
        self._stats_url = gateway_stats_url
        self._out = out or (lambda line: print(line, flush=True))
        self._task: asyncio.Task | None = None
        self._seen_turns: set[tuple[str, int]] = set()
        self._calls_total: int | None = None

    async def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.create_task(self._run(), name="live summary")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def banner(self) -> list[str]:
        every = f"every {self.interval:g} s when something happened" if self.interval > 0 else "off"
        return [f"summary    {every} (SWITCHBOARD_SUMMARY_SECONDS)"]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                line = summary_line(self.interval, self._read_metrics(), await self._voice())
            except Exception:  # a summary is a convenience: never let it take the host down
                log.exception("live summary failed")
                continue
            if line:
                self._out(line)

    def _read_metrics(self) -> dict[str, Any]:
        """The window's figures from the app's metrics: {name: [(attributes, point), ...]}."""
        data = self.reader.get_metrics_data()
        points: dict[str, list[tuple[dict, Any]]] = defaultdict(list)
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        points[metric.name].append((dict(point.attributes or {}), point))
        return points

    async def _voice(self) -> dict[str, Any]:
        """Calls and turns the gateway finished since the last poll (empty if it does not answer)."""
        if not self._stats_url:
            return {}
        try:
            async with aiohttp.ClientSession(timeout=_STATS_TIMEOUT) as session:
                async with session.get(self._stats_url) as response:
                    stats = await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return {}
        if not stats:
            return {}
        total = stats.get("calls", {}).get("total", 0)
        calls = total - self._calls_total if self._calls_total is not None else total
        self._calls_total = total
        latencies, listed = [], set()
        for turn in stats.get("turns", []):
            key = (str(turn.get("call")), int(turn.get("turn", 0)))
            listed.add(key)
            if key not in self._seen_turns and turn.get("end_of_speech_to_first_audio_ms") is not None:
                latencies.append(float(turn["end_of_speech_to_first_audio_ms"]))
        self._seen_turns = listed  # /stats lists recent turns only: remember just those, not every turn ever
        return {"calls": max(0, calls), "turns": latencies}


def summary_line(window: float, points: dict[str, list[tuple[dict, Any]]], voice: dict[str, Any]) -> str | None:
    """The one line for a window, or None when nothing happened in it."""
    parts: list[str] = []
    turns: dict[str, list[Any]] = defaultdict(list)
    for attributes, point in points.get(telemetry.TURN_DURATION, []):
        if point.count:
            turns[attributes.get("channel", "?")].append(point)
    for channel in sorted(turns):
        count = sum(p.count for p in turns[channel])
        parts.append(f"{channel} {count} turn{'s' * (count != 1)} p50 {_duration(_p50(turns[channel]))}")
    calls, voice_turns = voice.get("calls", 0), sorted(voice.get("turns", []))
    voice_parts = [f"{calls} call{'s' * (calls != 1)}"] * bool(calls)
    if voice_turns:
        n = len(voice_turns)
        voice_parts.append(f"{n} turn{'s' * (n != 1)} p50 {_duration(voice_turns[(n - 1) // 2])}")
    if voice_parts:
        parts.append("voice " + ", ".join(voice_parts))
    started = _sum(points, telemetry.HANDOFF_STARTED)
    outcomes: dict[str, int] = defaultdict(int)
    for attributes, point in points.get(telemetry.HANDOFF_OUTCOMES, []):
        outcomes[attributes.get("outcome", "?")] += point.value
    handoffs = [f"{started} started"] * bool(started)
    handoffs += [f"{n} {outcome}" for outcome, n in sorted(outcomes.items()) if n]
    if handoffs:
        parts.append("handoffs " + ", ".join(handoffs))
    dedup, errors = _sum(points, telemetry.DEDUP_HITS), _sum(points, telemetry.ERRORS)
    if not parts and not dedup and not errors:
        return None
    return f"· last {window:g}s: " + " · ".join([*parts, f"dedup {dedup}", f"errors {errors}"])


def _sum(points: dict[str, list[tuple[dict, Any]]], name: str) -> int:
    return int(sum(point.value for _, point in points.get(name, [])))


def _p50(histograms: list[Any]) -> float:
    """The median from merged bucket counts, interpolated geometrically inside its bucket and kept in [min, max]."""
    counts = [sum(h.bucket_counts[i] for h in histograms) for i in range(len(BOUNDARIES) + 1)]
    low, high = min(h.min for h in histograms), max(h.max for h in histograms)
    rank, seen = sum(counts) / 2, 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            lower = BOUNDARIES[index - 1] if index else low
            upper = BOUNDARIES[index] if index < len(BOUNDARIES) else high
            lower, upper = max(lower, low), min(upper, high)
            if lower <= 0 or upper <= lower:
                return upper
            return lower * math.pow(upper / lower, (rank - seen) / count)
        seen += count
    return high


def _duration(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"
