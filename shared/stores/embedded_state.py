"""SessionState in this process's memory: the embedded default when no Redis is configured.

Only correct for a single instance (a second instance would not see these keys), which is what the local host is.
Values are kept as JSON text, so callers get a fresh copy on every read and a value Redis could not hold fails here
too.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from shared.stores.base import SessionState

#: Never sweep more often than this many writes, so small stores do not pay for a full scan on every put.
_MIN_WRITES_BETWEEN_SWEEPS = 1024


class InProcessSessionState(SessionState):
    def __init__(self) -> None:
        # key -> (expires_at on the monotonic clock, JSON text). Monotonic: a wall-clock jump must not expire or
        # resurrect anything.
        self._entries: dict[str, tuple[float, str]] = {}
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()  # the host may call from worker threads as well as the event loop
        self._writes_since_sweep = 0
        self._sweep_after = _MIN_WRITES_BETWEEN_SWEEPS

    async def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            raw = self._live(_state(key), time.monotonic())
        return None if raw is None else json.loads(raw)

    async def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        raw = json.dumps(value)
        with self._lock:
            self._store(_state(key), raw, ttl_seconds)

    async def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(_state(key), None)

    async def mark_processed(self, event_id: str, ttl_seconds: float) -> bool:
        with self._lock:
            if self._live(_event(event_id), time.monotonic()) is not None:
                return False
            self._store(_event(event_id), "1", ttl_seconds)
            return True

    async def release_processed(self, event_id: str) -> None:
        with self._lock:
            self._entries.pop(_event(event_id), None)

    async def increment(self, key: str, amount: int = 1) -> int:
        with self._lock:
            value = self._counters.get(key, 0) + amount
            self._counters[key] = value
            return value

    async def set_counter(self, key: str, value: int) -> None:
        with self._lock:
            self._counters[key] = value

    # Under the lock ---------------------------------------------------------------------------------------------

    def _live(self, key: str, now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def _store(self, key: str, raw: str, ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        now = time.monotonic()
        self._entries[key] = (now + ttl_seconds, raw)
        self._writes_since_sweep += 1
        if self._writes_since_sweep >= self._sweep_after:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        # Keys nobody reads again (finished sessions, one-off event ids) would otherwise stay forever. Sweeping once
        # the writes since the last sweep outnumber the keys left by it costs O(1) per write on average and keeps
        # at most about twice the live keys in memory.
        self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
        self._writes_since_sweep = 0
        self._sweep_after = max(_MIN_WRITES_BETWEEN_SWEEPS, len(self._entries))


def _state(key: str) -> str:
    return f"state:{key}"


def _event(event_id: str) -> str:
    return f"event:{event_id}"


def _check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")
