"""CustomerStore on a local SQLite file: the embedded default when no Cosmos endpoint is configured.

Three tables: the customer records (JSON with an integer version column for optimistic concurrency), the session
bodies (one row per session, keyed by customer and session, with its own version) and the identity claims (whose
primary key makes a claim atomic). A write is one transaction that checks the record's version and each changed
body's version before it commits, so a turn lands whole or not at all. Rows may carry an `expires_at` (epoch
seconds): reads never return an expired row, and a sweep (at most once a minute, on a new record) deletes them.

The file may be shared by several local processes (see shared/stores/sqlite.py). Files written before bodies had a
table of their own still load: the sessions inside such a record are split off on its next write.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Callable, TypeVar

from shared.errors import Conflict
from shared.models import Customer, Identity
from shared.stores import records
from shared.stores.base import CustomerStore
from shared.stores.records import RecordLimits, SessionIdTaken
from shared.stores.sqlite import SqliteWorker, immediate

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    doc         TEXT NOT NULL,
    expires_at  REAL
);
CREATE TABLE IF NOT EXISTS identities (
    key         TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    expires_at  REAL
);
CREATE INDEX IF NOT EXISTS identities_by_customer ON identities (customer_id);
CREATE TABLE IF NOT EXISTS sessions (
    customer_id TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    doc         TEXT NOT NULL,
    expires_at  REAL,
    PRIMARY KEY (customer_id, session_id)
);
"""
#: Columns added since the first release: a file that predates them gets them on open.
_ADDED_COLUMNS = (("customers", "expires_at", "REAL"), ("identities", "expires_at", "REAL"))
#: How often (seconds) a process deletes expired rows, at most.
SWEEP_INTERVAL_SECONDS = 60.0
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


class SqliteCustomerStore(CustomerStore):
    def __init__(self, path: Path, limits: RecordLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or RecordLimits()
        self._db = SqliteWorker(self.path, _SCHEMA, "sqlite-customers")
        self._migrated = False
        self._swept_at = float("-inf")

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def migrated(conn: sqlite3.Connection) -> T:
            if not self._migrated:
                _add_missing_columns(conn)
                self._migrated = True
            return work(conn)

        return await self._db.run(migrated)

    async def close(self) -> None:
        await self._db.close()

    async def sweep(self) -> int:
        """Delete every expired record (with its bodies and claims), body and claim now. Returns the rows deleted."""
        now = self.clock()
        self._swept_at = now

        def sweep(conn: sqlite3.Connection) -> int:
            with immediate(conn):
                gone = [cid for (cid,) in conn.execute(
                    "SELECT customer_id FROM customers WHERE expires_at <= ?", (now,))]
                deleted = 0
                for customer_id in gone:
                    deleted += conn.execute("DELETE FROM sessions WHERE customer_id = ?", (customer_id,)).rowcount
                    deleted += conn.execute("DELETE FROM identities WHERE customer_id = ?", (customer_id,)).rowcount
                for table in ("customers", "sessions", "identities"):
                    deleted += conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,)).rowcount
                return deleted

        return await self._run(sweep)

    # Hooks ------------------------------------------------------------------------------------------------------

    async def _read(self, customer_id: str) -> Customer | None:
        now = self.clock()

        def read(conn: sqlite3.Connection) -> Customer | None:
            conn.execute("BEGIN")  # one snapshot: the record and its bodies as one write left them
            try:
                row = conn.execute(
                    f"SELECT doc, version FROM customers WHERE customer_id = ? AND {_LIVE}", (customer_id, now)
                ).fetchone()
                if row is None:
                    return None
                customer = Customer.from_dict(json.loads(row[0]), version=str(row[1]))
                wanted = records.bodies_to_load(customer, now)
                rows = conn.execute(
                    f"SELECT session_id, doc, version FROM sessions WHERE customer_id = ? "
                    f"AND session_id IN ({','.join('?' * len(wanted))})",
                    (customer_id, *wanted),
                ).fetchall() if wanted else []
            finally:
                conn.execute("COMMIT")
            return records.attach(customer, {sid: (json.loads(doc), str(v)) for sid, doc, v in rows})

        return await self._run(read)

    async def _read_session(self, customer_id: str, session_id: str) -> tuple[dict[str, Any], str] | None:
        now = self.clock()

        def read(conn: sqlite3.Connection) -> tuple[str, int] | None:
            return conn.execute(
                f"SELECT doc, version FROM sessions WHERE customer_id = ? AND session_id = ? AND {_LIVE}",
                (customer_id, session_id, now),
            ).fetchone()

        row = await self._run(read)
        return None if row is None else (json.loads(row[0]), str(row[1]))

    async def _insert(self, customer: Customer) -> Customer:
        plan = self._plan(customer, new=True)

        def insert(conn: sqlite3.Connection) -> dict[str, str]:
            with immediate(conn):
                try:
                    conn.execute(
                        "INSERT INTO customers (customer_id, version, doc, expires_at) VALUES (?, 1, ?, ?)",
                        (customer.customer_id, json.dumps(plan.record), plan.expires_at),
                    )
                except sqlite3.IntegrityError:
                    raise Conflict(f"customer {customer.customer_id!r} already exists") from None
                return _write_bodies(conn, customer.customer_id, plan)

        versions = await self._run(insert)
        if self.clock() - self._swept_at > SWEEP_INTERVAL_SECONDS:
            await self.sweep()  # new records are what piles up (anonymous visitors): clear the expired ones
        return records.written(customer, plan, "1", versions)

    async def _replace(self, customer: Customer) -> Customer:
        if customer.version is None:
            raise ValueError("_replace needs the version the record was read at")
        expected = int(customer.version)
        plan = self._plan(customer)

        def replace(conn: sqlite3.Connection) -> dict[str, str]:
            with immediate(conn):
                changed = conn.execute(
                    "UPDATE customers SET doc = ?, version = version + 1, expires_at = ? "
                    "WHERE customer_id = ? AND version = ?",
                    (json.dumps(plan.record), plan.expires_at, customer.customer_id, expected),
                ).rowcount
                if changed == 0:
                    # Either someone wrote since we read, or the record is gone; `update` re-reads and tells them apart.
                    raise Conflict(f"customer {customer.customer_id!r} changed since version {expected}")
                return _write_bodies(conn, customer.customer_id, plan)

        versions = await self._run(replace)
        return records.written(customer, plan, str(expected + 1), versions)

    async def _delete(self, customer_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.execute("DELETE FROM identities WHERE customer_id = ?", (customer_id,))
                conn.execute("DELETE FROM sessions WHERE customer_id = ?", (customer_id,))
                conn.execute("DELETE FROM customers WHERE customer_id = ?", (customer_id,))

        await self._run(delete)

    async def _claim_identity(self, identity: Identity, customer_id: str, expires_at: float | None = None) -> str:
        now = self.clock()

        def claim(conn: sqlite3.Connection) -> str:
            # One transaction, so the owner we report is the one our INSERT met, not one that came after a delete.
            with immediate(conn):
                conn.execute("DELETE FROM identities WHERE key = ? AND expires_at <= ?", (identity.key, now))
                conn.execute(
                    "INSERT OR IGNORE INTO identities (key, customer_id, expires_at) VALUES (?, ?, ?)",
                    (identity.key, customer_id, expires_at),
                )
                return conn.execute("SELECT customer_id FROM identities WHERE key = ?", (identity.key,)).fetchone()[0]

        return await self._run(claim)

    async def _identity_owner(self, identity: Identity) -> str | None:
        now = self.clock()

        def owner(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                f"SELECT customer_id FROM identities WHERE key = ? AND {_LIVE}", (identity.key, now)
            ).fetchone()
            return None if row is None else row[0]

        return await self._run(owner)

    async def _keep_identities(self, customer_id: str) -> None:
        def keep(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE identities SET expires_at = NULL WHERE customer_id = ?", (customer_id,))

        await self._run(keep)


def _write_bodies(conn: sqlite3.Connection, customer_id: str, plan: records.WritePlan) -> dict[str, str]:
    """Write the planned bodies inside the caller's transaction; raise (so it rolls back) if one was changed since
    it was read. Returns each written body's new version."""
    versions = {}
    for body in plan.bodies:
        doc = json.dumps(body.doc)
        if body.version is None:
            try:
                conn.execute(
                    "INSERT INTO sessions (customer_id, session_id, version, doc, expires_at) VALUES (?, ?, 1, ?, ?)",
                    (customer_id, body.session_id, doc, body.expires_at),
                )
            except sqlite3.IntegrityError:
                raise SessionIdTaken(f"session {body.session_id!r} of {customer_id!r} is already stored") from None
            versions[body.session_id] = "1"
            continue
        changed = conn.execute(
            "UPDATE sessions SET doc = ?, version = version + 1, expires_at = ? "
            "WHERE customer_id = ? AND session_id = ? AND version = ?",
            (doc, body.expires_at, customer_id, body.session_id, int(body.version)),
        ).rowcount
        if changed == 0:
            raise Conflict(f"session {body.session_id!r} changed since version {body.version}")
        versions[body.session_id] = str(int(body.version) + 1)
    return versions


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise
