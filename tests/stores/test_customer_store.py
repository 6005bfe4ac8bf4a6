"""CustomerStore contract: every adapter (SQLite, Cosmos on the emulator) must behave the same to its callers.

The last sections test what only one adapter must do: SQLite shared by two processes, Cosmos turning an outage
into Unavailable.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.errors import Conflict, NotFound, Unavailable
from shared.models import (
    Channel, ChannelSession, Customer, Identity, IdentityKind, SessionStatus, TranscriptNotLoaded, Turn,
)
from shared.stores import CustomerStore
from shared.stores.azure_cosmos import CosmosCustomerStore
from shared.stores.embedded_customers import SqliteCustomerStore
from tests.peers import free_port
from tests.peers.cosmos_emulator import CosmosEmulator

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# Fixtures ---------------------------------------------------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteCustomerStore]:
    store = SqliteCustomerStore(tmp_path / "not-yet-created" / "customers.sqlite3")
    yield store
    await store.close()


@pytest.fixture(scope="module")
async def cosmos_store(cosmos_emulator: CosmosEmulator) -> AsyncIterator[CosmosCustomerStore]:
    store = CosmosCustomerStore(
        cosmos_emulator.endpoint, cosmos_emulator.key, "switchboard_tests", f"customers_{uuid.uuid4().hex[:12]}",
        verify_tls=False,
    )
    await store.ensure()
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "cosmos"])
def store(request: pytest.FixtureRequest) -> CustomerStore:
    return request.getfixturevalue(f"{request.param}_store")


def phone() -> Identity:
    """A number no other test uses (the Cosmos container is shared by this module's tests)."""
    return Identity(IdentityKind.PHONE, f"+1555{random.randrange(10**7):07d}")


def webchat() -> Identity:
    return Identity(IdentityKind.WEBCHAT, uuid.uuid4().hex)


async def customers_naming(store: CustomerStore, identity: Identity) -> list[str]:
    """Ids of every stored customer record listing `identity`, read from the backend itself, orphans included."""
    if isinstance(store, SqliteCustomerStore):
        with sqlite3.connect(store.path) as conn:
            docs = [json.loads(doc) for (doc,) in conn.execute("SELECT doc FROM customers")]
        return [d["customer_id"] for d in docs if identity.key in d["identities"]]
    assert isinstance(store, CosmosCustomerStore)
    items = store._container.query_items(  # noqa: SLF001 - the test audits what the adapter left in the container
        "SELECT c.id FROM c WHERE c.type = 'customer' AND ARRAY_CONTAINS(c.identities, @key)",
        parameters=[{"name": "@key", "value": identity.key}],
    )
    return [item["id"] async for item in items]


# Reading and writing ----------------------------------------------------------------------------------------------


async def test_a_full_record_comes_back_as_it_was_stored(store: CustomerStore) -> None:
    number, chat, account = phone(), webchat(), Identity(IdentityKind.ACCOUNT, f"AC-{uuid.uuid4().hex[:8]}")
    customer = Customer.new(number, chat, account)
    voice = ChannelSession(session_id="ses_voice_1", channel=Channel.VOICE, status=SessionStatus.TRANSFERRED)
    voice.add_turn(Turn(role="customer", text="My power is out at 12 Elm St.", agent="triage"))
    voice.add_turn(Turn(role="agent", text="Sorry to hear that. Can I have your account number?", agent="triage"))
    chat_session = ChannelSession(session_id="ses_chat_1", channel=Channel.WEBCHAT, active_agent="outages")
    chat_session.add_turn(Turn(role="customer", text="Still out — any update? ☹"))
    customer.sessions = {voice.session_id: voice, chat_session.session_id: chat_session}
    customer.collected = {"account_number": "1234-5678", "service_address": "12 Elm St."}
    customer.summary = "Reported an outage by phone, continued on web chat."

    stored = await store.create(customer)
    read = await store.get(customer.customer_id)

    assert read.to_dict() == customer.to_dict()
    assert read.version is not None and read.version == stored.version
    for identity in (number, chat, account):
        found = await store.find_by_identity(identity)
        assert found is not None and found.customer_id == customer.customer_id


async def test_reading_a_missing_customer_raises_not_found(store: CustomerStore) -> None:
    with pytest.raises(NotFound):
        await store.get(f"cus_{uuid.uuid4().hex}")
    assert await store.find_by_identity(phone()) is None


async def test_an_identity_that_needs_escaping_still_finds_its_customer(store: CustomerStore) -> None:
    # Account numbers from other systems can hold characters Cosmos does not allow in an id.
    odd = Identity(IdentityKind.ACCOUNT, f"AC/{uuid.uuid4().hex[:6]}#7?x\\y%2F")
    lookalike = Identity(IdentityKind.ACCOUNT, odd.value.replace("%2F", "/"))  # must not collide after escaping
    customer, created = await store.get_or_create(odd)
    other, other_created = await store.get_or_create(lookalike)

    assert created and other_created and other.customer_id != customer.customer_id
    found = await store.find_by_identity(odd)
    assert found is not None and found.customer_id == customer.customer_id


# get_or_create ----------------------------------------------------------------------------------------------------


async def test_get_or_create_returns_the_same_customer_the_second_time(store: CustomerStore) -> None:
    number = phone()
    first, first_created = await store.get_or_create(number)
    second, second_created = await store.get_or_create(number)

    assert (first_created, second_created) == (True, False)
    assert second.customer_id == first.customer_id
    assert second.identities == [number]


async def test_concurrent_get_or_create_for_a_new_number_makes_exactly_one_customer(store: CustomerStore) -> None:
    number = phone()
    results = await asyncio.gather(*(store.get_or_create(number) for _ in range(20)))

    assert len({customer.customer_id for customer, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    # The losers' candidate records were deleted, not left behind as orphans.
    assert await customers_naming(store, number) == [results[0][0].customer_id]


# Optimistic concurrency -------------------------------------------------------------------------------------------


async def test_a_write_based_on_a_stale_read_is_rejected(store: CustomerStore) -> None:
    customer, _ = await store.get_or_create(phone())
    stale = await store.get(customer.customer_id)
    fresh = await store.get(customer.customer_id)

    fresh.collected["account_number"] = "1111"
    written = await store._replace(fresh)  # noqa: SLF001 - the hook under test
    stale.collected["account_number"] = "2222"
    with pytest.raises(Conflict):
        await store._replace(stale)  # noqa: SLF001

    assert written.version != stale.version
    assert (await store.get(customer.customer_id)).collected["account_number"] == "1111"


async def test_concurrent_updates_all_survive(store: CustomerStore) -> None:
    customer, _ = await store.get_or_create(phone())

    def setter(i: int):
        def mutate(c: Customer) -> int:
            c.collected[f"slot_{i}"] = str(i)
            return i

        return mutate

    results = await asyncio.gather(*(store.update(customer.customer_id, setter(i)) for i in range(50)))

    assert sorted(result for _, result in results) == list(range(50))
    stored = await store.get(customer.customer_id)
    assert stored.collected == {f"slot_{i}": str(i) for i in range(50)}


async def test_updating_a_missing_customer_raises_not_found(store: CustomerStore) -> None:
    with pytest.raises(NotFound):
        await store.update(f"cus_{uuid.uuid4().hex}", lambda c: None)


# Identities -------------------------------------------------------------------------------------------------------


async def test_add_identity_links_a_new_channel_to_the_customer(store: CustomerStore) -> None:
    customer, _ = await store.get_or_create(phone())
    chat = webchat()

    updated = await store.add_identity(customer.customer_id, chat)
    await store.add_identity(customer.customer_id, chat)  # again: harmless

    assert updated.identities.count(chat) == 1
    found = await store.find_by_identity(chat)
    assert found is not None and found.customer_id == customer.customer_id


async def test_an_identity_held_by_another_customer_cannot_be_added(store: CustomerStore) -> None:
    number = phone()
    holder, _ = await store.get_or_create(number)
    other, _ = await store.get_or_create(phone())

    with pytest.raises(Conflict):
        await store.add_identity(other.customer_id, number)

    assert number not in (await store.get(other.customer_id)).identities
    found = await store.find_by_identity(number)
    assert found is not None and found.customer_id == holder.customer_id


async def test_creating_a_customer_with_a_taken_identity_fails_and_leaves_nothing(store: CustomerStore) -> None:
    number, chat = phone(), webchat()
    holder, _ = await store.get_or_create(number)
    newcomer = Customer.new(chat, number)

    with pytest.raises(Conflict):
        await store.create(newcomer)

    with pytest.raises(NotFound):
        await store.get(newcomer.customer_id)
    assert await store.find_by_identity(chat) is None  # the identity it did claim was released
    assert (await store.find_by_identity(number)).customer_id == holder.customer_id


# SQLite only: one file, several processes -------------------------------------------------------------------------

_OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from shared.stores.embedded_customers import SqliteCustomerStore

    async def main(path, customer_id):
        store = SqliteCustomerStore(Path(path))
        def setter(i):
            return lambda c: c.collected.__setitem__(f"theirs_{i}", str(i))
        await asyncio.gather(*(store.update(customer_id, setter(i)) for i in range(40)))
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_sqlite_file_shared_with_another_process_loses_no_update(tmp_path: Path) -> None:
    path = tmp_path / "customers.sqlite3"
    store = SqliteCustomerStore(path)
    try:
        customer, _ = await store.get_or_create(phone())
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _OTHER_PROCESS, str(path), customer.customer_id, cwd=PROJECT_ROOT,
            stderr=subprocess.PIPE,
        )

        def setter(i: int):
            return lambda c: c.collected.__setitem__(f"ours_{i}", str(i))

        await asyncio.gather(*(store.update(customer.customer_id, setter(i)) for i in range(40)))
        _, stderr = await other.communicate()
        assert other.returncode == 0, stderr.decode()

        collected = (await store.get(customer.customer_id)).collected
        assert {k for k in collected if k.startswith("ours_")} == {f"ours_{i}" for i in range(40)}
        assert {k for k in collected if k.startswith("theirs_")} == {f"theirs_{i}" for i in range(40)}
    finally:
        await store.close()


async def test_sqlite_takes_100_concurrent_writers(sqlite_store: SqliteCustomerStore) -> None:
    numbers = [phone() for _ in range(100)]
    created = await asyncio.gather(*(sqlite_store.get_or_create(n) for n in numbers))
    await asyncio.gather(
        *(sqlite_store.update(c.customer_id, lambda c: c.collected.__setitem__("seen", "yes")) for c, _ in created)
    )
    for customer, _ in created:
        assert (await sqlite_store.get(customer.customer_id)).collected == {"seen": "yes"}


# Cosmos only: an outage is Unavailable, not a crash -----------------------------------------------------------------


async def test_cosmos_unreachable_raises_unavailable() -> None:
    store = CosmosCustomerStore(
        f"https://127.0.0.1:{free_port()}", "a2V5", "switchboard_tests", "customers", verify_tls=False
    )
    try:
        with pytest.raises(Unavailable) as caught:
            await store.get("cus_anyone")
        assert caught.value.retry_after and caught.value.retry_after > 0
    finally:
        await store.close()


# The record and its sessions' bodies ------------------------------------------------------------------------------
#
# A record lists its recent sessions; each session's transcript (its body) is stored beside it. These tests read the
# backend itself (`raw_record`, `raw_body`) to check what is stored where.


async def raw_record(store: CustomerStore, customer_id: str) -> dict | None:
    """The stored record document, as the backend holds it."""
    if isinstance(store, SqliteCustomerStore):
        with sqlite3.connect(store.path) as conn:
            row = conn.execute("SELECT doc FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
        return None if row is None else json.loads(row[0])
    assert isinstance(store, CosmosCustomerStore)
    return await store._read_item(customer_id, customer_id)  # noqa: SLF001 - the test audits the container


async def raw_body(store: CustomerStore, customer_id: str, session_id: str) -> dict | None:
    if isinstance(store, SqliteCustomerStore):
        with sqlite3.connect(store.path) as conn:
            row = conn.execute("SELECT doc FROM sessions WHERE customer_id = ? AND session_id = ?",
                               (customer_id, session_id)).fetchone()
        return None if row is None else json.loads(row[0])
    assert isinstance(store, CosmosCustomerStore)
    return await store._read_item(f"session:{session_id}", customer_id)  # noqa: SLF001


async def put_old_format_record(store: CustomerStore, doc: dict, identity: Identity) -> None:
    """A record as the code before session bodies wrote it: every session whole inside it, and its identity claim."""
    if isinstance(store, SqliteCustomerStore):
        await store.get_or_create(phone())  # creates the file and its tables
        with sqlite3.connect(store.path) as conn:
            conn.execute("INSERT INTO customers (customer_id, version, doc) VALUES (?, 1, ?)",
                         (doc["customer_id"], json.dumps(doc)))
            conn.execute("INSERT INTO identities (key, customer_id) VALUES (?, ?)", (identity.key, doc["customer_id"]))
        return
    assert isinstance(store, CosmosCustomerStore)
    await store._container.create_item({**doc, "type": "customer"})  # noqa: SLF001
    claim = f"identity:{identity.key}"
    await store._container.create_item({"id": claim, "customer_id": claim, "type": "identity",  # noqa: SLF001
                                        "owner": doc["customer_id"]})


async def touch_body_behind_the_records_back(store: CustomerStore, customer_id: str, session_id: str) -> None:
    """Change a session's stored body without its record: only another writer's half-done write could do that."""
    if isinstance(store, SqliteCustomerStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE sessions SET version = version + 1 WHERE customer_id = ? AND session_id = ?",
                         (customer_id, session_id))
        return
    assert isinstance(store, CosmosCustomerStore)
    body = await raw_body(store, customer_id, session_id)
    await store._container.replace_item(body["id"], body)  # noqa: SLF001 - a new ETag


def twin(store: CustomerStore, cosmos_emulator: CosmosEmulator | None = None) -> CustomerStore:
    """A second store on the same backend: another process's view, which this store's in-process locks do not
    serialise with, so writers through the two really race."""
    if isinstance(store, SqliteCustomerStore):
        return SqliteCustomerStore(store.path)
    assert isinstance(store, CosmosCustomerStore) and cosmos_emulator is not None
    cosmos = store._cosmos  # noqa: SLF001
    return CosmosCustomerStore(cosmos_emulator.endpoint, cosmos_emulator.key, cosmos.database_name,
                               cosmos.container_name, verify_tls=False)


def chat(session_id: str, *texts: str, status: SessionStatus = SessionStatus.ACTIVE) -> ChannelSession:
    session = ChannelSession(session_id=session_id, channel=Channel.WEBCHAT, status=status)
    for text in texts:
        session.add_turn(Turn(role="customer", text=text))
    return session


async def test_a_closed_sessions_transcript_is_stored_apart_and_read_on_request(store: CustomerStore) -> None:
    customer = Customer.new(phone())
    closed = chat("ses_closed", "my meter reads 4417", status=SessionStatus.COMPLETED)
    open_ = chat("ses_open", "is there an outage?")
    customer.sessions = {closed.session_id: closed, open_.session_id: open_}
    await store.create(customer)

    read = await store.get(customer.customer_id)

    assert [t.text for t in read.sessions["ses_open"].turns] == ["is there an outage?"]  # active: it came along
    assert read.sessions["ses_closed"].status is SessionStatus.COMPLETED  # closed: its header did
    with pytest.raises(TranscriptNotLoaded):  # and its turns refuse to pass for an empty transcript
        _ = [t.text for t in read.sessions["ses_closed"].turns]
    whole = await store.get_session(customer.customer_id, "ses_closed")
    assert whole.to_dict() == closed.to_dict()
    record = await raw_record(store, customer.customer_id)
    assert "turns" not in json.dumps(record["sessions"])  # the record carries headers only
    assert [t["text"] for t in (await raw_body(store, customer.customer_id, "ses_open"))["turns"]] == [
        "is there an outage?"]
    with pytest.raises(NotFound):
        await store.get_session(customer.customer_id, "ses_nobody")


async def test_a_turn_writes_the_record_and_the_session_together_or_not_at_all(store: CustomerStore) -> None:
    customer = Customer.new(phone())
    customer.sessions = {"ses_1": chat("ses_1", "hello")}
    await store.create(customer)

    def turn(text: str, slot: str):
        def mutate(c: Customer) -> None:
            c.sessions["ses_1"].add_turn(Turn(role="customer", text=text))
            c.collected[slot] = text
        return mutate

    # A conflict on the record: someone wrote it since we read. Neither the turn nor the slot lands.
    stale = await store.get(customer.customer_id)
    await store.update(customer.customer_id, lambda c: c.collected.__setitem__("other", "writer"))
    turn("lost on the record", "slot_a")(stale)
    with pytest.raises(Conflict):
        await store._replace(stale)  # noqa: SLF001 - the atomic write under test
    # A conflict on the session's body alone (its record untouched): again nothing lands, the record included.
    stale = await store.get(customer.customer_id)
    await touch_body_behind_the_records_back(store, customer.customer_id, "ses_1")
    turn("lost on the body", "slot_b")(stale)
    with pytest.raises(Conflict):
        await store._replace(stale)  # noqa: SLF001

    stored = await store.get(customer.customer_id)
    assert [t.text for t in stored.sessions["ses_1"].turns] == ["hello"]
    assert "slot_a" not in stored.collected
    if isinstance(store, SqliteCustomerStore):
        # One transaction: the record's write is rolled back with the body's. Azure Cosmos runs the batch as one
        # transaction too; the npm emulator keeps a failed batch's earlier operations (see azure_cosmos.py), which
        # a race never meets, since every body write also rewrites the record (the first check above).
        assert "slot_b" not in stored.collected
    # `update` re-reads and re-applies, so the same turn goes through once the writes stop.
    await store.update(customer.customer_id, turn("landed", "slot_c"))
    assert [t.text for t in (await store.get(customer.customer_id)).sessions["ses_1"].turns] == ["hello", "landed"]


async def test_writers_racing_on_one_session_and_on_two_sessions_of_a_customer_lose_nothing(
    store: CustomerStore, request: pytest.FixtureRequest
) -> None:
    emulator = request.getfixturevalue("cosmos_emulator") if isinstance(store, CosmosCustomerStore) else None
    other = twin(store, emulator)
    try:
        customer = Customer.new(phone())
        customer.sessions = {"ses_a": chat("ses_a"), "ses_b": chat("ses_b")}
        await store.create(customer)

        def say(session_id: str, text: str):
            return lambda c: c.sessions[session_id].add_turn(Turn(role="customer", text=text))

        writes = [
            (store if i % 2 else other).update(customer.customer_id, say("ses_a" if i % 4 < 2 else "ses_b", f"m{i}"))
            for i in range(24)
        ]
        await asyncio.gather(*writes)

        stored = await store.get(customer.customer_id)
        assert sorted(t.text for t in stored.sessions["ses_a"].turns) == sorted(f"m{i}" for i in range(24) if i % 4 < 2)
        assert sorted(t.text for t in stored.sessions["ses_b"].turns) == sorted(f"m{i}" for i in range(24) if i % 4 >= 2)
    finally:
        await other.close()


async def test_a_customer_with_500_sessions_of_200_turns_keeps_a_record_under_100_kb(store: CustomerStore) -> None:
    customer, _ = await store.get_or_create(phone())
    words = "I'd like to know why my bill went up this month, and whether there is an outage on my street."

    def session(n: int):
        def add(c: Customer) -> None:
            done = chat(f"ses_{n:03d}", *(f"{words} ({n}.{i})" for i in range(200)), status=SessionStatus.COMPLETED)
            c.sessions[done.session_id] = done
        return add

    for n in range(500):
        await store.update(customer.customer_id, session(n))

    record = await raw_record(store, customer.customer_id)
    size = len(json.dumps(record).encode())
    assert size < 100_000, f"the record is {size / 1000:.0f} KB"
    stored = await store.get(customer.customer_id)
    assert len(stored.sessions) == store.limits.session_index_max
    assert stored.session_count(Channel.WEBCHAT) == 500
    first = await store.get_session(customer.customer_id, "ses_000")  # aged out of the record, still readable
    assert len(first.turns) == 200 and first.turns[0].text.endswith("(0.0)")


async def test_an_old_record_with_sessions_inside_loads_and_is_split_on_its_next_write(store: CustomerStore) -> None:
    number = phone()
    customer = Customer.new(number)
    closed = chat("ses_old", "my power went out", status=SessionStatus.TRANSFERRED)
    open_ = chat("ses_now", "still out")
    doc = {**customer.to_dict(), "sessions": {s.session_id: s.to_dict() for s in (closed, open_)}}
    await put_old_format_record(store, doc, number)

    read = await store.find_by_identity(number)
    assert read is not None
    assert [t.text for t in read.sessions["ses_old"].turns] == ["my power went out"]  # came whole, as written
    await store.update(customer.customer_id, lambda c: c.sessions["ses_now"].add_turn(Turn("agent", "A crew is on it.")))

    record = await raw_record(store, customer.customer_id)
    assert "turns" not in json.dumps(record["sessions"])
    assert [t["text"] for t in (await raw_body(store, customer.customer_id, "ses_old"))["turns"]] == ["my power went out"]
    again = await store.get(customer.customer_id)
    assert [t.text for t in again.sessions["ses_now"].turns] == ["still out", "A crew is on it."]
    assert (await store.get_session(customer.customer_id, "ses_old")).turns[0].text == "my power went out"


async def test_an_anonymous_visitor_who_never_speaks_expires_after_a_day(
    store: CustomerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    visitor = webchat()
    customer, created = await store.get_or_create(visitor)
    await store.update(customer.customer_id, lambda c: c.sessions.__setitem__("ses_quiet", chat("ses_quiet")))
    assert created and customer.expires_at is not None

    a_day_later = store.clock() + store.limits.anonymous_ttl_seconds + 1
    monkeypatch.setattr(store, "clock", lambda: a_day_later)

    with pytest.raises(NotFound):
        await store.get(customer.customer_id)
    assert await store.find_by_identity(visitor) is None
    again, created_again = await store.get_or_create(visitor)  # the identity is free again: a new, empty visitor
    assert created_again and again.customer_id != customer.customer_id
    if isinstance(store, SqliteCustomerStore):
        await store.sweep()
        assert await raw_record(store, customer.customer_id) is None
        assert await raw_body(store, customer.customer_id, "ses_quiet") is None
    else:  # Cosmos deletes by `ttl` itself (the emulator never does); the items carry it
        assert (await raw_record(store, customer.customer_id))["ttl"] > 0
        assert (await raw_body(store, customer.customer_id, "ses_quiet"))["ttl"] > 0


@pytest.mark.parametrize("how", ["says something", "gives a phone number"])
async def test_an_anonymous_visitor_who_speaks_or_identifies_is_kept(
    store: CustomerStore, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    visitor = webchat()
    customer, _ = await store.get_or_create(visitor)
    await store.update(customer.customer_id, lambda c: c.sessions.__setitem__("ses_1", chat("ses_1")))
    if how == "says something":
        await store.update(customer.customer_id, lambda c: c.sessions["ses_1"].add_turn(Turn("customer", "hi")))
    else:
        await store.add_identity(customer.customer_id, phone())

    kept = await store.get(customer.customer_id)
    assert kept.expires_at is None
    a_year_later = store.clock() + 365 * 86400
    monkeypatch.setattr(store, "clock", lambda: a_year_later)
    found = await store.find_by_identity(visitor)
    assert found is not None and found.customer_id == customer.customer_id
    if isinstance(store, SqliteCustomerStore):
        await store.sweep()
    record = await raw_record(store, customer.customer_id)
    assert record is not None and "ttl" not in record and record["expires_at"] is None
    assert "ttl" not in (await raw_body(store, customer.customer_id, "ses_1"))


async def test_a_session_left_active_past_the_idle_limit_is_marked_expired_on_the_next_write(
    store: CustomerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = Customer.new(phone())
    customer.sessions = {"ses_tab": chat("ses_tab", "hello")}
    await store.create(customer)

    later = store.clock() + store.limits.idle_session_seconds + 1
    monkeypatch.setattr(store, "clock", lambda: later)
    await store.update(customer.customer_id, lambda c: c.collected.__setitem__("x", "y"))

    stored = await store.get(customer.customer_id)
    assert stored.sessions["ses_tab"].status is SessionStatus.EXPIRED
    assert (await store.get_session(customer.customer_id, "ses_tab")).turns[0].text == "hello"


def test_a_session_read_from_its_header_has_every_field_a_whole_one_has() -> None:
    whole = ChannelSession("ses_1", Channel.WHATSAPP, status=SessionStatus.TRANSFERRED, active_agent="BillingAgent")
    header_only = ChannelSession.from_header(whole.header())

    assert set(vars(header_only)) == set(vars(whole))  # from_header fills the fields in directly: none forgotten
    assert header_only.header() == whole.header() and not header_only.loaded
    with pytest.raises(TranscriptNotLoaded):
        header_only.add_turn(Turn("customer", "hello"))
    with pytest.raises(TranscriptNotLoaded):
        header_only.message(key="wamid.1")
