"""The plumbing both embedded SQLite stores share: one worker thread, one connection, WAL, a busy timeout.

The local host, the media gateway and a test process may open the same file at once, so every read goes to the file
(no cache), the journal is WAL (readers never wait for the writer) and a busy timeout makes a writer wait for the
other process's lock instead of failing. Within one process every call runs on one worker thread with one
connection: that keeps blocking I/O off the event loop and serialises our own writers, so the busy timeout is only
ever spent on another process.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

#: How long a write waits for another process holding the lock before SQLite gives up with "database is locked".
BUSY_TIMEOUT_MS = 10_000


class SqliteWorker:
    def __init__(self, path: Path, schema: str, name: str) -> None:
        self.path = Path(path)
        self._schema = schema
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None  # opened on the worker thread, used only there

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._on_worker, work)

    async def close(self) -> None:
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        if self._conn is not None:
            await self.run(shut)
        self._worker.shutdown(wait=True)

    def _on_worker(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._open()
        return work(self._conn)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, so single statements commit at once and multi-statement writes say
        # BEGIN IMMEDIATE themselves (taking the write lock up front; a deferred read-then-write upgrade in WAL fails
        # with SQLITE_BUSY without waiting for the busy timeout).
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # before WAL: switching needs the lock too
        _switch_to_wal(conn)
        # In WAL, NORMAL survives an app crash; only a power cut can lose the last commits. Good for an embedded store.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(self._schema)
        return conn


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    # Two processes opening a brand-new file at once race to switch it to WAL, and SQLite answers the loser "database
    # is locked" at once, without waiting out the busy timeout. The winner's switch takes milliseconds: try again.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block in a write transaction taken up front; roll back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
