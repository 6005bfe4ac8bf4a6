"""CustomerStore on a local SQLite file: the embedded default when no Cosmos endpoint is configured.

The local host and a test process may open the same file at once, so every read goes to the file (no cache), the
journal is WAL (readers never wait for the writer) and a busy timeout makes a writer wait for the other process's
lock instead of failing. Within one process every call runs on one worker thread with one connection: that keeps
blocking I/O off the event loop and serialises our own writers, so the busy timeout is only ever spent on another
process.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from shared.errors import Conflict
from shared.models import Customer, Identity
from shared.stores.base import CustomerStore

T = TypeVar("T")

#: How long a write waits for another process holding the lock before SQLite gives up with "database is locked".
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    key         TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS identities_by_customer ON identities (customer_id);
"""


class SqliteCustomerStore(CustomerStore):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-customers")
        self._conn: sqlite3.Connection | None = None  # opened on the worker thread, used only there

    # Plumbing ---------------------------------------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._on_worker, work)

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
        conn.execute("PRAGMA journal_mode = WAL")
        # In WAL, NORMAL survives an app crash; only a power cut can lose the last commits. Good for an embedded store.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    async def close(self) -> None:
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        if self._conn is not None:
            await self._run(shut)
        self._worker.shutdown(wait=True)

    # Hooks ------------------------------------------------------------------------------------------------------

    async def _read(self, customer_id: str) -> Customer | None:
        def read(conn: sqlite3.Connection) -> tuple[str, int] | None:
            return conn.execute(
                "SELECT doc, version FROM customers WHERE customer_id = ?", (customer_id,)
            ).fetchone()

        row = await self._run(read)
        return None if row is None else Customer.from_dict(json.loads(row[0]), version=str(row[1]))

    async def _insert(self, customer: Customer) -> Customer:
        doc = customer.to_dict()

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO customers (customer_id, version, doc) VALUES (?, 1, ?)",
                    (customer.customer_id, json.dumps(doc)),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"customer {customer.customer_id!r} already exists") from None

        await self._run(insert)
        return Customer.from_dict(doc, version="1")

    async def _replace(self, customer: Customer) -> Customer:
        if customer.version is None:
            raise ValueError("_replace needs the version the record was read at")
        expected = int(customer.version)
        doc = customer.to_dict()

        def replace(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE customers SET doc = ?, version = version + 1 WHERE customer_id = ? AND version = ?",
                (json.dumps(doc), customer.customer_id, expected),
            ).rowcount

        if await self._run(replace) == 0:
            # Either someone wrote since we read, or the record is gone; `update` re-reads and tells them apart.
            raise Conflict(f"customer {customer.customer_id!r} changed since version {expected}")
        return Customer.from_dict(doc, version=str(expected + 1))

    async def _delete(self, customer_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                conn.execute("DELETE FROM identities WHERE customer_id = ?", (customer_id,))
                conn.execute("DELETE FROM customers WHERE customer_id = ?", (customer_id,))

        await self._run(delete)

    async def _claim_identity(self, identity: Identity, customer_id: str) -> str:
        def claim(conn: sqlite3.Connection) -> str:
            # One transaction, so the owner we report is the one our INSERT met, not one that came after a delete.
            with _immediate(conn):
                conn.execute(
                    "INSERT OR IGNORE INTO identities (key, customer_id) VALUES (?, ?)", (identity.key, customer_id)
                )
                return conn.execute("SELECT customer_id FROM identities WHERE key = ?", (identity.key,)).fetchone()[0]

        return await self._run(claim)

    async def _identity_owner(self, identity: Identity) -> str | None:
        def owner(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT customer_id FROM identities WHERE key = ?", (identity.key,)).fetchone()
            return None if row is None else row[0]

        return await self._run(owner)


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block in a write transaction taken up front; roll back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
