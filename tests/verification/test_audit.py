"""Every verification attempt and every disclosure of account data is recorded for the customer: what happened, on
which channel and session, for which tool, at what level, and when. Each session's body holds its own entries (the
record a turn reads stays small); the desk reads them all through CustomerStore.audit."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from shared.models import Channel, Customer, SessionStatus
from shared.stores.embedded_customers import SqliteCustomerStore
from tests.verification.conftest import JORDAN, Rig


async def test_the_record_lists_each_request_wrong_answer_verification_and_disclosure(rig: Rig) -> None:
    visitor = await rig.web_chat()
    await visitor.say("what's my balance? account 100200300")
    await visitor.say("000000" if await rig.code(JORDAN) != "000000" else "111111")
    await visitor.say(await rig.code(JORDAN))
    await visitor.say("and how much energy did I use?")

    audit = await visitor.audit()
    assert [e["event"] for e in audit] == ["verification_requested", "verification_wrong", "verification_verified",
                                           "disclosed", "disclosed"]
    requested, wrong, verified, balance, usage = audit
    assert {k: requested[k] for k in ("channel", "session_id", "tool", "method", "level")} == {
        "channel": "webchat", "session_id": visitor.session_id, "tool": "get_balance", "method": "code",
        "level": "unverified"}
    assert (wrong["method"], wrong["level"]) == ("code", "unverified")
    assert (verified["method"], verified["level"]) == ("code", "verified")
    assert [(d["tool"], d["level"], d["channel"]) for d in (balance, usage)] == [
        ("get_balance", "verified", "webchat"), ("get_usage", "verified", "webchat")]
    times = [datetime.fromisoformat(e["at"]) for e in audit]
    assert times == sorted(times)


async def test_a_refused_request_and_an_identified_callers_disclosure_are_recorded(rig: Rig) -> None:
    caller = await rig.from_phone(Channel.VOICE, JORDAN)
    await caller.say("is there a power outage at my house?")  # the caller ID is enough for the outage at his address
    for _ in range(rig.scenario.verification.codes_per_hour):
        await (await rig.web_chat()).say("what's my balance? account 100200300")
    await caller.say("what's my balance?")  # codes used up this hour: asked the other way

    audit = [e for e in await caller.audit() if e["session_id"] == caller.session_id]
    assert [(e["event"], e.get("tool"), e["level"], e["channel"]) for e in audit] == [
        ("disclosed", "check_outage", "identified", "voice"),
        ("verification_requested", "get_balance", "identified", "voice"),
    ]
    assert audit[1]["method"] == "knowledge"


async def test_the_audit_stays_off_the_record_a_turn_reads_and_a_closed_sessions_entries_still_reach_the_desk(
        rig: Rig) -> None:
    # Jordan calls twice. The first call ends; the second reads his balance. The record every turn reads must not
    # carry the audit (a customer with a long history would drag it through each turn), yet the desk's view of his
    # audit must still hold the first call's entries.
    first = await rig.from_phone(Channel.VOICE, JORDAN)
    await first.say("is there a power outage at my house?")

    def hang_up(customer: Customer) -> None:
        customer.session(first.session_id).status = SessionStatus.COMPLETED

    await rig.customers.update(first.customer_id, hang_up)
    second = await rig.from_phone(Channel.VOICE, JORDAN)
    await second.say("what's my balance?")
    await second.say(await rig.code(JORDAN))

    stored = await _stored_record(rig.customers, first.customer_id)
    assert "audit" not in stored and not any("audit" in header for header in stored["sessions"].values())
    record = await second.record()
    assert not record.session(first.session_id).loaded, "the closed call's body is not read with the record"

    audit = await second.audit()
    assert [(e["session_id"], e["event"], e.get("tool")) for e in audit] == [
        (first.session_id, "disclosed", "check_outage"),
        (second.session_id, "verification_requested", "get_balance"),
        (second.session_id, "verification_verified", None),
        (second.session_id, "disclosed", "get_balance"),
    ]


async def test_entries_a_record_held_before_the_audit_moved_are_kept_and_listed_first(rig: Rig) -> None:
    caller = await rig.from_phone(Channel.VOICE, JORDAN)
    old = {"at": "2026-01-02T03:04:05+00:00", "event": "disclosed", "channel": "webchat", "session_id": "web_old",
           "tool": "get_balance", "level": "verified"}

    def written_the_old_way(customer: Customer) -> None:
        customer.legacy_audit.append(old)

    await rig.customers.update(caller.customer_id, written_the_old_way)
    await caller.say("is there a power outage at my house?")

    audit = await caller.audit()
    assert audit[0] == old
    assert [e["event"] for e in audit[1:]] == ["disclosed"]
    assert (await _stored_record(rig.customers, caller.customer_id))["audit"] == [old], "kept through later writes"


async def _stored_record(store: SqliteCustomerStore, customer_id: str) -> dict:
    """The record document exactly as SQLite holds it (what each turn reads)."""
    def read(conn: sqlite3.Connection) -> str:
        return conn.execute("SELECT doc FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()[0]

    return json.loads(await store._run(read))
