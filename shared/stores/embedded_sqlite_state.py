"""SessionState in a local SQLite file: the embedded default, shared by every local process.

`make run` is several processes (the Functions host, the media gateway) and tests add their own; hot state, queue
counters and processed-event ids must be the same for all of them, as Redis makes them in Azure. Expiry is a
timestamp checked on read; expired rows are swept now and then so the file does not grow without bound.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from shared.stores.base import SessionState
from shared.stores.sqlite import SqliteWorker, immediate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

T = TypeVar("T")

#: Sweep expired rows once every this many writes.
SWEEP_EVERY = 500


class SqliteSessionState(SessionState):
    def __init__(self, path: Path, clock=time.time) -> None:
        self._db = SqliteWorker(Path(path), _SCHEMA, "sqlite-state")
        self._clock = clock  # wall clock: several processes must agree on it
        self._writes = 0

    async def get(self, key: str) -> dict[str, Any] | None:
        now = self._clock()
        row = await self._db.run(
            lambda c: c.execute("SELECT value FROM state WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
        )
        return None if row is None else json.loads(row[0])

    async def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        raw, expires = json.dumps(value), self._clock() + ttl_seconds
        await self._write(
            lambda c: c.execute("INSERT OR REPLACE INTO state (key, value, expires_at) VALUES (?, ?, ?)", (key, raw, expires))
        )

    async def delete(self, key: str) -> None:
        await self._db.run(lambda c: c.execute("DELETE FROM state WHERE key = ?", (key,)))

    async def mark_processed(self, event_id: str, ttl_seconds: float) -> bool:
        _check_ttl(ttl_seconds)
        now = self._clock()

        def mark(conn: sqlite3.Connection) -> bool:
            with immediate(conn):  # an expired mark is replaced; a live one wins
                conn.execute("DELETE FROM events WHERE id = ? AND expires_at <= ?", (event_id, now))
                return conn.execute(
                    "INSERT OR IGNORE INTO events (id, expires_at) VALUES (?, ?)", (event_id, now + ttl_seconds)
                ).rowcount == 1

        return await self._write(mark)

    async def release_processed(self, event_id: str) -> None:
        await self._db.run(lambda c: c.execute("DELETE FROM events WHERE id = ?", (event_id,)))

    async def increment(self, key: str, amount: int = 1) -> int:
        def add(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "INSERT INTO counters (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value RETURNING value",
                (key, amount),
            ).fetchone()[0]

        return await self._db.run(add)

    async def set_counter(self, key: str, value: int) -> None:
        await self._db.run(lambda c: c.execute("INSERT OR REPLACE INTO counters (key, value) VALUES (?, ?)", (key, value)))

    async def close(self) -> None:
        await self._db.close()

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        result = await self._db.run(work)
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            now = self._clock()
            await self._db.run(lambda c: (c.execute("DELETE FROM state WHERE expires_at <= ?", (now,)),
                                          c.execute("DELETE FROM events WHERE expires_at <= ?", (now,))))
        return result


def _check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")
