"""Customer record benchmark: does a customer who keeps coming back slow down, or outgrow the store?

Run it from the repository root:

    .venv/bin/python bench/record_size.py                       # 500 sessions of 200 turns, SQLite and Cosmos
    .venv/bin/python bench/record_size.py --sessions 50 --turns 40 --backends sqlite

One customer (a phone number) has S sessions one after another, each of T turns (T/2 messages from the customer,
each answered), driven through the real conversation core (`Conversation.open`, `Conversation.turn`) with the
offline policy and in-process hot state, the way the voice channel drives it; each session is then closed as the
call service closes a call that ended. The journey (bench/common.JOURNEY) names Jordan's account, so each session
proves it with his ZIP code and last name (this core sends no codes), and each check and each disclosure of his
account data goes on the audit in that session's body (shared/models.ChannelSession.audit), not on the record.
Before the customer starts, one throwaway session of the same length warms
the code paths, so the first measured session does not pay for them.

The bench shares its machine with whatever else runs, and minutes pass between a customer's first session and
their S-th, so the comparison is made side by side: the customer's session S runs interleaved, turn by turn, with a
new customer's session 1, and the ratio compares those two. The customer's own first session, minutes earlier, is
printed too.

Backends: `sqlite` (the embedded store, in a temporary file) and `cosmos` (the npm Cosmos DB emulator under
tests/peers, started here on a free port; skipped with a note if node or the emulator is not installed, `make
setup`). The emulator keeps everything in one Node process's memory, so its figures show how the store's requests
grow, not Azure's latencies.

What it prints, per backend:

    record       the stored customer record's size in KB after S sessions (JSON as stored; must stay under 100 KB,
                 Cosmos refuses items over 2 MB), and how many sessions it lists (SESSION_INDEX_MAX)
    first        latency of each `turn` call in the customer's first session: p50, p95, max, in milliseconds
    session S    the same for their last session, with S-1 sessions of T turns behind them
    session 1    the same for a new customer's first session, run interleaved with session S
    ratio        p50 of session S over p50 of that session 1 (must be at most --max-ratio, 1.2), and over first

Percentiles use the nearest-rank method. Each turn reads the record with the bodies of its active sessions and
writes the record and the one body that changed, so its cost depends on the record's size and the session's, not on
how many sessions came before. The exit status is 1 if a record reaches 100 KB or a ratio is over --max-ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: `python bench/record_size.py`
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import JOURNEY, PROJECT_ROOT, PROOF, Proof, free_port, percentile, stop_process  # noqa: E402

from shared.conversation import Conversation  # noqa: E402
from shared.models import Channel, Customer, Identity, IdentityKind, SessionStatus, new_id, utcnow  # noqa: E402
from shared.policies.offline import OfflinePolicy  # noqa: E402
from shared.scenario import load_scenario  # noqa: E402
from shared.stores.base import CustomerStore  # noqa: E402
from shared.stores.embedded_state import InProcessSessionState  # noqa: E402
from tests.verifying import knowledge_answers  # noqa: E402

RECORD_LIMIT_BYTES = 100_000
EMULATOR = PROJECT_ROOT / "tests" / "peers" / "cosmos_emulator.js"
EMULATOR_PACKAGE = PROJECT_ROOT / "tests" / "peers" / "node_modules" / "@vercel" / "cosmosdb-server"
#: The well-known key every Cosmos DB emulator accepts (published by Microsoft; not a secret).
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="


class BackendUnavailable(Exception):
    """The backend cannot run here (the emulator is not installed); the reason is printed instead of figures."""


@dataclass
class Figures:
    backend: str
    record_bytes: int = 0
    listed: int = 0
    first_ms: list[float] = field(default_factory=list)
    last_ms: list[float] = field(default_factory=list)
    fresh_ms: list[float] = field(default_factory=list)

    def ratio(self, other: list[float]) -> float:
        return percentile(self.last_ms, 50) / percentile(other, 50)


async def session(conversation: Conversation, turns: int, *people: tuple[str, list[float] | None]) -> None:
    """One voice session of `turns` turns (half of them the customer's) for each of `people` (customer id, where to
    put its turns' latencies), their turns taken in alternation; closed at the end as a call that ended."""
    sessions = [(customer_id, new_id("ses"), timings) for customer_id, timings in people]
    for customer_id, session_id, _ in sessions:
        await conversation.open(Channel.VOICE, session_id, customer_id)
    for n in range(turns // 2):
        for customer_id, session_id, timings in sessions:
            text = JOURNEY[n % len(JOURNEY)]
            if text == PROOF:  # this core sends no codes: the agent asks the account holder's ZIP code and name
                text = knowledge_answers(Proof.ACCOUNT)
            started = time.perf_counter()
            await conversation.turn(session_id, customer_id, text)
            if timings is not None:
                timings.append((time.perf_counter() - started) * 1000)
    for customer_id, session_id, _ in sessions:
        await conversation.customers.update(customer_id, _hang_up(session_id))


def _hang_up(session_id: str):
    def close(customer: Customer) -> None:
        ended = customer.sessions[session_id]
        ended.status, ended.updated_at = SessionStatus.COMPLETED, utcnow()

    return close


def new_phone() -> Identity:
    return Identity(IdentityKind.PHONE, f"+1555{uuid.uuid4().int % 10**7:07d}")


async def measure(backend: str, store: CustomerStore, sessions: int, turns: int, record_size) -> Figures:
    conversation = Conversation(load_scenario("utilities"), store, InProcessSessionState(), OfflinePolicy())
    figures = Figures(backend)
    warm, _ = await store.get_or_create(new_phone())
    await session(conversation, turns, (warm.customer_id, None))

    customer, _ = await store.get_or_create(new_phone())
    started = time.monotonic()
    for n in range(1, sessions):
        await session(conversation, turns, (customer.customer_id, figures.first_ms if n == 1 else None))
        if n % 50 == 0:
            print(f"  {backend}: {n} sessions, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    newcomer, _ = await store.get_or_create(new_phone())
    await session(conversation, turns, (customer.customer_id, figures.last_ms), (newcomer.customer_id, figures.fresh_ms))
    figures.record_bytes = await record_size(customer.customer_id)
    figures.listed = len((await store.get(customer.customer_id)).sessions)
    return figures


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[tuple[CustomerStore, object]]:
    from shared.stores.embedded_customers import SqliteCustomerStore

    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    store = SqliteCustomerStore(workdir / "customers.sqlite3")

    async def size(customer_id: str) -> int:
        with sqlite3.connect(store.path) as conn:
            (doc,) = conn.execute("SELECT doc FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
        return len(doc.encode())

    try:
        yield store, size
    finally:
        await store.close()
        shutil.rmtree(workdir, ignore_errors=True)


@asynccontextmanager
async def cosmos_store() -> AsyncIterator[tuple[CustomerStore, object]]:
    node = shutil.which("node")
    if node is None or not EMULATOR_PACKAGE.exists():
        raise BackendUnavailable("node or the Cosmos DB emulator is not installed (`make setup`)")
    from shared.stores.azure_cosmos import CosmosCustomerStore

    port = free_port()
    process = subprocess.Popen([node, str(EMULATOR), "-p", str(port), "--host", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(_wait_listening, port)
        store = CosmosCustomerStore(f"https://127.0.0.1:{port}", EMULATOR_KEY, "bench", "customers", verify_tls=False)
        await store.ensure()

        async def size(customer_id: str) -> int:
            item = await store._read_item(customer_id, customer_id)  # noqa: SLF001 - the item as stored
            return len(json.dumps(item).encode())

        try:
            yield store, size
        finally:
            await store.close()
    finally:
        stop_process(process)


def _wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BackendUnavailable(f"the Cosmos DB emulator did not listen on port {port}") from None
            time.sleep(0.1)


def _latency(values: list[float]) -> str:
    return (f"p50 {percentile(values, 50):6.2f}  p95 {percentile(values, 95):6.2f}  max {max(values):6.2f} ms"
            f"  ({len(values)} turns)")


def report(figures: Figures, sessions: int, turns: int, max_ratio: float) -> tuple[str, bool]:
    ratio, early = figures.ratio(figures.fresh_ms), figures.ratio(figures.first_ms)
    ok = figures.record_bytes < RECORD_LIMIT_BYTES and ratio <= max_ratio
    lines = [
        f"{figures.backend}:",
        f"  record       {figures.record_bytes / 1000:.1f} KB after {sessions} sessions of {turns} turns "
        f"(limit {RECORD_LIMIT_BYTES // 1000} KB), {figures.listed} sessions listed",
        f"  first        {_latency(figures.first_ms)}",
        f"  session {sessions:<4} {_latency(figures.last_ms)}",
        f"  session 1    {_latency(figures.fresh_ms)}",
        f"  ratio        session {sessions} / session 1: {ratio:.2f} (must be <= {max_ratio}); "
        f"/ first: {early:.2f}  {'ok' if ok else 'FAIL'}",
    ]
    return "\n".join(lines), ok


async def run(backends: list[str], sessions: int, turns: int, max_ratio: float) -> bool:
    stores = {"sqlite": sqlite_store, "cosmos": cosmos_store}
    all_ok = True
    for backend in backends:
        try:
            async with stores[backend]() as (store, size):
                figures = await measure(backend, store, sessions, turns, size)
        except BackendUnavailable as exc:
            print(f"{backend}: skipped: {exc}", flush=True)
            continue
        text, ok = report(figures, sessions, turns, max_ratio)
        print(text, flush=True)
        all_ok &= ok
    return all_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=500, help="sessions the customer has (default 500)")
    parser.add_argument("--turns", type=int, default=200, help="turns per session, half the customer's (default 200)")
    parser.add_argument("--backends", default="sqlite,cosmos", help="comma-separated: sqlite, cosmos")
    parser.add_argument("--max-ratio", type=float, default=1.2, help="allowed p50 slowdown of the last session")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.sessions < 2 or args.turns < 2 or not set(backends) <= {"sqlite", "cosmos"}:
        parser.error("--sessions and --turns must be at least 2; --backends takes sqlite and cosmos")
    ok = asyncio.run(run(backends, args.sessions, args.turns, args.max_ratio))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
