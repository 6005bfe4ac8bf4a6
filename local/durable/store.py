"""SQLite persistence for the Durable engine: instances, their history, an inbox of messages, and activities owed.

This is the task hub. Everything that changes an orchestration goes through the inbox, as in DTFx's control queue:
a start, an activity result, a timer (a message with a due time), a raised event, a termination. Applying one message
(append to history, replay, record the new work, delete the message) is one transaction, so a SIGKILL at any point
leaves either the old state with the message still queued or the new state without it. An activity is recorded in
`work` in the same transaction that schedules it and removed in the same transaction that queues its result, so after
a crash the engine re-runs exactly the activities whose results it never recorded (activities must be idempotent).

One connection, shared by the event loop's worker threads under a lock; WAL keeps commits cheap and survives a
killed process.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.durable.history import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id       TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    execution_id      TEXT NOT NULL,
    status            TEXT NOT NULL,      -- Pending, Running, ContinuedAsNew, Completed, Failed, Terminated
    input             TEXT,               -- JSON text of the input token (NULL: none)
    output            TEXT,               -- JSON text
    custom_status     TEXT,               -- JSON text
    created_time      TEXT NOT NULL,
    last_updated_time TEXT NOT NULL,
    book              TEXT NOT NULL       -- the replay's bookkeeping (task ids, open tasks), JSON
);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    event       TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE TABLE IF NOT EXISTS inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id  TEXT NOT NULL,
    execution_id TEXT,                    -- NULL: for whichever execution is current (raised events, terminate)
    kind         TEXT NOT NULL,           -- start, task_completed, task_failed, timer_fired, event_raised, terminate
    task_id      INTEGER,
    payload      TEXT NOT NULL,
    due          TEXT NOT NULL            -- sortable UTC text; a timer waits in the inbox until then
);
CREATE INDEX IF NOT EXISTS inbox_due ON inbox (due, id);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox (instance_id);
CREATE TABLE IF NOT EXISTS work (
    instance_id  TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id      INTEGER NOT NULL,
    name         TEXT NOT NULL,
    input        TEXT,
    PRIMARY KEY (instance_id, execution_id, task_id)
);
"""

RUNNING_STATES = ("Pending", "Running", "ContinuedAsNew")
TERMINAL_STATES = ("Completed", "Failed", "Terminated")


@dataclass
class InstanceRow:
    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: str
    last_updated_time: str
    book: dict[str, Any]

    @property
    def is_running(self) -> bool:
        return self.status in RUNNING_STATES


@dataclass(frozen=True)
class Message:
    id: int
    instance_id: str
    execution_id: str | None
    kind: str
    task_id: int | None
    payload: dict[str, Any]
    due: str


@dataclass(frozen=True)
class Work:
    """An activity scheduled and not yet reported back."""

    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


@dataclass(frozen=True)
class Query:
    """Filters of `GET /instances/` and of purge-by-filter; None means any."""

    created_from: str | None = None
    created_to: str | None = None
    statuses: tuple[str, ...] | None = None
    prefix: str | None = None


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a transaction takes the write lock up front.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL with NORMAL sync survives a killed process; only a power cut can lose the last commit.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """All-or-nothing: commits when the block ends, rolls back if it raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # reads that need no transaction

    def instance(self, instance_id: str) -> InstanceRow | None:
        with self._lock:
            return Tx(self._db).instance(instance_id)

    def history(self, instance_id: str) -> list[Event]:
        with self._lock:
            return Tx(self._db).history(instance_id)

    def instances(self, query: Query) -> list[InstanceRow]:
        with self._lock:
            return Tx(self._db).instances(query)

    def next_message(self, now: str) -> tuple[Message | None, str | None]:
        """The first message due by `now` (by due time, then arrival), else None and the next due time, if any."""
        with self._lock:
            row = self._db.execute("SELECT * FROM inbox WHERE due <= ? ORDER BY due, id LIMIT 1", (now,)).fetchone()
            if row is not None:
                return _message(row), None
            (next_due,) = self._db.execute("SELECT MIN(due) FROM inbox").fetchone()
            return None, next_due

    def all_work(self) -> list[Work]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM work ORDER BY rowid").fetchall()
            return [Work(r["instance_id"], r["execution_id"], r["task_id"], r["name"], r["input"]) for r in rows]


class Tx:
    """The statements the engine composes into one transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    # instances

    def instance(self, instance_id: str) -> InstanceRow | None:
        row = self._db.execute("SELECT * FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
        return _instance(row) if row is not None else None

    def instances(self, query: Query) -> list[InstanceRow]:
        where, args = _where(query)
        rows = self._db.execute(f"SELECT * FROM instances{where} ORDER BY created_time, instance_id", args)
        return [_instance(row) for row in rows.fetchall()]

    def put_instance(self, row: InstanceRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.instance_id,
                row.name,
                row.execution_id,
                row.status,
                row.input,
                row.output,
                row.custom_status,
                row.created_time,
                row.last_updated_time,
                json.dumps(row.book),
            ),
        )

    def delete_instance(self, instance_id: str) -> int:
        """Everything about one instance: its row, history, queued messages and owed activities."""
        for table in ("history", "inbox", "work"):
            self._db.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))
        return self._db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,)).rowcount

    # history

    def history(self, instance_id: str) -> list[Event]:
        rows = self._db.execute("SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,))
        return [json.loads(event) for (event,) in rows.fetchall()]

    def append_history(self, instance_id: str, events: list[Event]) -> None:
        (last,) = self._db.execute("SELECT MAX(seq) FROM history WHERE instance_id = ?", (instance_id,)).fetchone()
        start = -1 if last is None else last
        self._db.executemany(
            "INSERT INTO history VALUES (?, ?, ?)",
            [(instance_id, start + 1 + i, json.dumps(event)) for i, event in enumerate(events)],
        )

    def clear_history(self, instance_id: str) -> None:
        self._db.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))

    # inbox

    def add_message(
        self,
        instance_id: str,
        kind: str,
        payload: dict[str, Any],
        due: str,
        *,
        execution_id: str | None = None,
        task_id: int | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO inbox (instance_id, execution_id, kind, task_id, payload, due) VALUES (?, ?, ?, ?, ?, ?)",
            (instance_id, execution_id, kind, task_id, json.dumps(payload), due),
        )

    def message(self, message_id: int) -> Message | None:
        row = self._db.execute("SELECT * FROM inbox WHERE id = ?", (message_id,)).fetchone()
        return _message(row) if row is not None else None

    def delete_message(self, message_id: int) -> None:
        self._db.execute("DELETE FROM inbox WHERE id = ?", (message_id,))

    def cancel_timers(self, instance_id: str, task_ids: list[int]) -> None:
        self._db.executemany(
            "DELETE FROM inbox WHERE instance_id = ? AND kind = 'timer_fired' AND task_id = ?",
            [(instance_id, task_id) for task_id in task_ids],
        )

    def drop_execution_messages(self, instance_id: str) -> None:
        """Timers and results that belong to an execution that ended; raised events stay for the next one."""
        self._db.execute("DELETE FROM inbox WHERE instance_id = ? AND execution_id IS NOT NULL", (instance_id,))

    # work

    def add_work(self, work: Work) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO work VALUES (?, ?, ?, ?, ?)",
            (work.instance_id, work.execution_id, work.task_id, work.name, work.input),
        )

    def take_work(self, instance_id: str, execution_id: str, task_id: int) -> bool:
        """Remove an owed activity; False if it was no longer owed (instance ended, purged or restarted)."""
        cursor = self._db.execute(
            "DELETE FROM work WHERE instance_id = ? AND execution_id = ? AND task_id = ?",
            (instance_id, execution_id, task_id),
        )
        return cursor.rowcount > 0

    def drop_work(self, instance_id: str) -> None:
        self._db.execute("DELETE FROM work WHERE instance_id = ?", (instance_id,))


def _instance(row: sqlite3.Row) -> InstanceRow:
    return InstanceRow(
        instance_id=row["instance_id"],
        name=row["name"],
        execution_id=row["execution_id"],
        status=row["status"],
        input=row["input"],
        output=row["output"],
        custom_status=row["custom_status"],
        created_time=row["created_time"],
        last_updated_time=row["last_updated_time"],
        book=json.loads(row["book"]),
    )


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        instance_id=row["instance_id"],
        execution_id=row["execution_id"],
        kind=row["kind"],
        task_id=row["task_id"],
        payload=json.loads(row["payload"]),
        due=row["due"],
    )


def _where(query: Query) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if query.created_from is not None:
        clauses.append("created_time >= ?")
        args.append(query.created_from)
    if query.created_to is not None:
        clauses.append("created_time <= ?")
        args.append(query.created_to)
    if query.statuses:
        clauses.append(f"status IN ({', '.join('?' * len(query.statuses))})")
        args.extend(query.statuses)
    if query.prefix:
        clauses.append("substr(instance_id, 1, ?) = ?")  # not LIKE: ids may hold % and _
        args.extend([len(query.prefix), query.prefix])
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
