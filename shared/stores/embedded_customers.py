"""CustomerStore on a local SQLite file: the embedded default when no Cosmos endpoint is configured.

Documents are JSON with an integer version column for optimistic concurrency; identities are a table whose primary
key makes a claim atomic. The file may be shared by several local processes (see shared/stores/sqlite.py).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Callable, TypeVar

from shared.errors import Conflict
from shared.models import Customer, Identity
from shared.stores.base import CustomerStore
from shared.stores.sqlite import SqliteWorker, immediate

T = TypeVar("T")

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
        self._db = SqliteWorker(self.path, _SCHEMA, "sqlite-customers")

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(work)

    async def close(self) -> None:
        await self._db.close()

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
            with immediate(conn):
                conn.execute("DELETE FROM identities WHERE customer_id = ?", (customer_id,))
                conn.execute("DELETE FROM customers WHERE customer_id = ?", (customer_id,))

        await self._run(delete)

    async def _claim_identity(self, identity: Identity, customer_id: str) -> str:
        def claim(conn: sqlite3.Connection) -> str:
            # One transaction, so the owner we report is the one our INSERT met, not one that came after a delete.
            with immediate(conn):
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
