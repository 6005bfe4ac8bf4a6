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

from shared.stores.base import LEASE_MEMORY_SECONDS, SessionState, check_ttl, next_fencing_token
from shared.stores.sqlite import SqliteWorker, immediate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, token INTEGER NOT NULL, expires_at REAL NOT NULL,
                                   forget_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS hits (key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS members (key TEXT NOT NULL, member TEXT NOT NULL, expires_at REAL NOT NULL,
                                    PRIMARY KEY (key, member));
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
        check_ttl(ttl_seconds)
        raw, expires = json.dumps(value), self._clock() + ttl_seconds
        await self._write(
            lambda c: c.execute("INSERT OR REPLACE INTO state (key, value, expires_at) VALUES (?, ?, ?)", (key, raw, expires))
        )

    async def delete(self, key: str) -> None:
        await self._db.run(lambda c: c.execute("DELETE FROM state WHERE key = ?", (key,)))

    async def mark_processed(self, event_id: str, ttl_seconds: float) -> bool:
        check_ttl(ttl_seconds)
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

    async def merge(self, key: str, changes: dict[str, Any], ttl_seconds: float) -> dict[str, Any]:
        check_ttl(ttl_seconds)

        def merge(conn: sqlite3.Connection) -> dict[str, Any]:
            # Read and write under the write lock, so no other process merges in between; the clock is read there
            # too, so time spent waiting for the lock does not count against the TTLs.
            with immediate(conn):
                now = self._clock()
                row = conn.execute("SELECT value FROM state WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
                merged = {**(json.loads(row[0]) if row else {}), **changes}
                raw = json.dumps(merged)
                conn.execute("INSERT OR REPLACE INTO state (key, value, expires_at) VALUES (?, ?, ?)",
                             (key, raw, now + ttl_seconds))
                return json.loads(raw)

        return await self._write(merge)

    async def acquire_lease(self, key: str, ttl_seconds: float) -> int | None:
        check_ttl(ttl_seconds)

        def acquire(conn: sqlite3.Connection) -> int | None:
            with immediate(conn):
                now = self._clock()
                row = conn.execute("SELECT token, expires_at FROM leases WHERE key = ?", (key,)).fetchone()
                if row is not None and row[1] > now:
                    return None
                token = next_fencing_token(row[0] if row else None, now)
                conn.execute(
                    "INSERT OR REPLACE INTO leases (key, token, expires_at, forget_at) VALUES (?, ?, ?, ?)",
                    (key, token, now + ttl_seconds, now + ttl_seconds + LEASE_MEMORY_SECONDS),
                )
                return token

        return await self._write(acquire)

    async def renew_lease(self, key: str, token: int, ttl_seconds: float) -> bool:
        check_ttl(ttl_seconds)

        def renew(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            return conn.execute(
                "UPDATE leases SET expires_at = ?, forget_at = ? WHERE key = ? AND token = ? AND expires_at > ?",
                (now + ttl_seconds, now + ttl_seconds + LEASE_MEMORY_SECONDS, key, token, now),
            ).rowcount == 1

        return await self._write(renew)

    async def release_lease(self, key: str, token: int) -> None:
        # The row stays (ended) until forget_at, so the next token is above this one.
        def release(conn: sqlite3.Connection) -> None:
            now = self._clock()
            conn.execute("UPDATE leases SET expires_at = ? WHERE key = ? AND token = ? AND expires_at > ?",
                         (now, key, token, now))

        await self._db.run(release)

    async def hit(self, key: str, window_seconds: float) -> int:
        check_ttl(window_seconds)

        def count(conn: sqlite3.Connection) -> int:
            with immediate(conn):  # an ended window starts again at 1
                now = self._clock()
                conn.execute("DELETE FROM hits WHERE key = ? AND expires_at <= ?", (key, now))
                return conn.execute(
                    "INSERT INTO hits (key, count, expires_at) VALUES (?, 1, ?) "
                    "ON CONFLICT (key) DO UPDATE SET count = count + 1 RETURNING count",
                    (key, now + window_seconds),
                ).fetchall()[0][0]  # fetchall: the statement must finish before the COMMIT

        return await self._write(count)

    async def add_member(self, key: str, member: str, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
        await self._write(lambda c: c.execute(
            "INSERT OR REPLACE INTO members (key, member, expires_at) VALUES (?, ?, ?)",
            (key, member, self._clock() + ttl_seconds),
        ))

    async def remove_member(self, key: str, member: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            with immediate(conn):
                live = conn.execute("DELETE FROM members WHERE key = ? AND member = ? AND expires_at > ?",
                                    (key, member, self._clock())).rowcount == 1
                conn.execute("DELETE FROM members WHERE key = ? AND member = ?", (key, member))  # expired: garbage
                return live

        return await self._db.run(remove)

    async def count_members(self, key: str) -> int:
        return await self._db.run(lambda c: c.execute(
            "SELECT COUNT(*) FROM members WHERE key = ? AND expires_at > ?", (key, self._clock())
        ).fetchone()[0])

    async def members(self, key: str) -> list[str]:
        rows = await self._db.run(lambda c: c.execute(
            "SELECT member FROM members WHERE key = ? AND expires_at > ?", (key, self._clock())
        ).fetchall())
        return [row[0] for row in rows]

    async def close(self) -> None:
        await self._db.close()

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        result = await self._db.run(work)
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            now = self._clock()
            await self._db.run(lambda c: (c.execute("DELETE FROM state WHERE expires_at <= ?", (now,)),
                                          c.execute("DELETE FROM events WHERE expires_at <= ?", (now,)),
                                          c.execute("DELETE FROM leases WHERE forget_at <= ?", (now,)),
                                          c.execute("DELETE FROM hits WHERE expires_at <= ?", (now,)),
                                          c.execute("DELETE FROM members WHERE expires_at <= ?", (now,))))
        return result

