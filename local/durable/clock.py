"""Time for the Durable engine: the real clock in `python -m local`, a hand-driven one in tests.

The orchestrator never reads the wall clock: `context.current_utc_datetime` comes from the OrchestratorStarted
timestamps the engine writes, and timers fire when the engine's clock reaches their `fireAt`. So swapping the clock
is all a test needs to run a 10-minute handoff timeout in no time.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

#: The format DTFx timestamps and the SDK's `fireAt` use (the SDK parses them with dateutil).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(moment: datetime) -> str:
    """UTC, microseconds, `Z`: sortable as text, so SQLite can compare due times as strings."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (`Z` or an offset; naive means UTC) as an aware UTC datetime. ValueError if it is not one."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current UTC time (aware)."""
        ...

    async def wait(self, wakeup: asyncio.Event, deadline: datetime | None) -> None:
        """Return when `wakeup` is set or the clock reaches `deadline` (None: only on `wakeup`)."""
        ...


class SystemClock:
    """The wall clock: timers fire in real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def wait(self, wakeup: asyncio.Event, deadline: datetime | None) -> None:
        timeout = None if deadline is None else max(0.0, (deadline - self.now()).total_seconds())
        try:
            await asyncio.wait_for(wakeup.wait(), timeout)
        except TimeoutError:
            pass


class ScaledClock:
    """The wall clock, sped up `scale` times from the moment it is made: a 5-minute retry timer fires in 5 s at 60.

    For a whole local host (LOCAL_DURABLE_TIME_SCALE), where a test cannot turn a ManualClock: what it runs on real
    time (an outage, a network timeout) does not speed up, so only a test whose point is the orchestration's own
    timing (a handoff giving up after minutes of retries) should use it.
    """

    def __init__(self, scale: float) -> None:
        if not scale > 0:
            raise ValueError("a clock's scale must be positive")
        self.scale = scale
        self._origin = datetime.now(UTC)
        self._started = time.monotonic()

    def now(self) -> datetime:
        return self._origin + timedelta(seconds=(time.monotonic() - self._started) * self.scale)

    async def wait(self, wakeup: asyncio.Event, deadline: datetime | None) -> None:
        timeout = None if deadline is None else max(0.0, (deadline - self.now()).total_seconds() / self.scale)
        try:
            await asyncio.wait_for(wakeup.wait(), timeout)
        except TimeoutError:
            pass


#: Environment variable: run `python -m local`'s Durable engine on a ScaledClock this many times faster.
TIME_SCALE_ENV = "LOCAL_DURABLE_TIME_SCALE"


def clock_from_environment() -> Clock:
    """The wall clock, or a ScaledClock when LOCAL_DURABLE_TIME_SCALE is set (a number above 0)."""
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return SystemClock()
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"{TIME_SCALE_ENV} must be a number, not {raw!r}") from None
    if not 0 < scale < float("inf"):
        raise ValueError(f"{TIME_SCALE_ENV} must be a finite number above 0, not {raw!r}")
    return ScaledClock(scale)


class ManualClock:
    """A clock that only moves when a test says so: `clock.advance(minutes=10)` fires every timer due by then."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime(2026, 1, 1, tzinfo=UTC)).astimezone(UTC)
        self._sleepers: set[asyncio.Event] = set()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by `delta` (or timedelta keywords: seconds=..., minutes=...) and wake the engine."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError("a clock never goes back")
        self._now += step
        for sleeper in self._sleepers:
            sleeper.set()
        return self._now

    async def wait(self, wakeup: asyncio.Event, deadline: datetime | None) -> None:
        if deadline is not None and deadline <= self._now:
            return
        self._sleepers.add(wakeup)
        try:
            await wakeup.wait()
        finally:
            self._sleepers.discard(wakeup)
