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

from shared.stores.base import LEASE_MEMORY_SECONDS, SessionState, check_ttl, next_fencing_token

#: Never sweep more often than this many writes, so small stores do not pay for a full scan on every put.
_MIN_WRITES_BETWEEN_SWEEPS = 1024


class InProcessSessionState(SessionState):
    def __init__(self) -> None:
        # key -> (expires_at on the monotonic clock, JSON text). Monotonic: a wall-clock jump must not expire or
        # resurrect anything.
        self._entries: dict[str, tuple[float, str]] = {}
        self._counters: dict[str, int] = {}
        self._sets: dict[str, dict[str, float]] = {}  # key -> member -> expires_at (monotonic)
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

    async def merge(self, key: str, changes: dict[str, Any], ttl_seconds: float) -> dict[str, Any]:
        check_ttl(ttl_seconds)
        with self._lock:
            raw = self._live(_state(key), time.monotonic())
            merged = {**(json.loads(raw) if raw is not None else {}), **changes}
            self._store(_state(key), json.dumps(merged), ttl_seconds)
        return json.loads(json.dumps(merged))  # the caller's copy, as get would give it

    async def acquire_lease(self, key: str, ttl_seconds: float) -> int | None:
        check_ttl(ttl_seconds)
        with self._lock:
            now = time.monotonic()
            lease = self._lease(key, now)
            if lease is not None and lease["until"] > now:
                return None
            token = next_fencing_token(lease and lease["token"], time.time())
            self._put_lease(key, token, now + ttl_seconds)
            return token

    async def renew_lease(self, key: str, token: int, ttl_seconds: float) -> bool:
        check_ttl(ttl_seconds)
        with self._lock:
            now = time.monotonic()
            lease = self._lease(key, now)
            if lease is None or lease["token"] != token or lease["until"] <= now:
                return False
            self._put_lease(key, token, now + ttl_seconds)
            return True

    async def release_lease(self, key: str, token: int) -> None:
        with self._lock:
            now = time.monotonic()
            lease = self._lease(key, now)
            if lease is not None and lease["token"] == token and lease["until"] > now:
                self._put_lease(key, token, now)  # ended, but its token is remembered

    async def hit(self, key: str, window_seconds: float) -> int:
        check_ttl(window_seconds)
        with self._lock:
            entry_key, now = _hit(key), time.monotonic()
            raw = self._live(entry_key, now)
            if raw is None:
                self._store(entry_key, "1", window_seconds)
                return 1
            count = int(raw) + 1
            self._entries[entry_key] = (self._entries[entry_key][0], str(count))  # the window keeps its end
            return count

    async def add_member(self, key: str, member: str, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
        with self._lock:
            now = time.monotonic()
            members = self._live_members(key, now)
            members[member] = now + ttl_seconds
            self._sets[key] = members

    async def remove_member(self, key: str, member: str) -> bool:
        with self._lock:
            members = self._live_members(key, time.monotonic())
            return members.pop(member, None) is not None

    async def count_members(self, key: str) -> int:
        with self._lock:
            return len(self._live_members(key, time.monotonic()))

    async def members(self, key: str) -> list[str]:
        with self._lock:
            return list(self._live_members(key, time.monotonic()))

    # Under the lock ---------------------------------------------------------------------------------------------

    def _live(self, key: str, now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def _live_members(self, key: str, now: float) -> dict[str, float]:
        # Expired members are dropped whenever their set is touched, so a set holds little more than its live ones.
        members = {m: until for m, until in self._sets.get(key, {}).items() if until > now}
        self._sets[key] = members
        return members

    def _lease(self, key: str, now: float) -> dict[str, Any] | None:
        raw = self._live(_lease(key), now)
        return None if raw is None else json.loads(raw)

    def _put_lease(self, key: str, token: int, until: float) -> None:
        # The entry outlives the lease by LEASE_MEMORY_SECONDS so the next token is above this one.
        self._store(_lease(key), json.dumps({"token": token, "until": until}), until - time.monotonic() + LEASE_MEMORY_SECONDS)

    def _store(self, key: str, raw: str, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
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


def _lease(key: str) -> str:
    return f"lease:{key}"


def _hit(key: str) -> str:
    return f"hit:{key}"
