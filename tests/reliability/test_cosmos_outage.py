"""Cosmos DB goes away under a running host, then comes back: customers get a clear 503 within seconds, nothing is
half-written, and what they retry after recovery happens exactly once.

The npm Cosmos emulator (tests/peers/cosmos_emulator.py) keeps its data in memory only, so killing and restarting it
would come back with no database at all, which is not what a Cosmos outage looks like. It also advertises its own
address as the account's regional endpoint, so the SDK would bypass a relay put in front of it. So each test starts
its own emulator process and freezes it (SIGSTOP): its port still accepts connections and nothing answers, the worst
kind of outage for a client (a refused connection fails fast, a stall waits for timeouts). SIGCONT brings it back
with its data.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.peers import free_port, unavailable
from tests.peers.cosmos_emulator import CLI, EMULATOR_KEY, LAUNCHER, _wait_until_listening

CUSTOMER_PHONE = "+15555550166"


class Emulator:
    """The npm Cosmos emulator as this test's own process, which the test can freeze and thaw."""

    def __init__(self, workdir: Path) -> None:
        node = shutil.which("node")
        if node is None or not CLI.exists():
            unavailable("the Cosmos DB emulator needs node and `make setup` (tests/peers/node_modules)")
        self.port = free_port()
        self.endpoint = f"https://127.0.0.1:{self.port}"
        self._log = workdir / "emulator.log"
        with open(self._log, "wb") as log:
            self.process = subprocess.Popen([node, str(LAUNCHER), "-p", str(self.port), "--host", "127.0.0.1"],
                                            stdout=log, stderr=subprocess.STDOUT)
        _wait_until_listening(self.process, self.port, self._log)

    def down(self) -> None:
        """SIGSTOP: the port stays open and nothing answers, as when Cosmos or the route to it stalls."""
        self.process.send_signal(signal.SIGSTOP)

    def up(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.up()
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def emulator(tmp_path):
    running = Emulator(tmp_path)
    yield running
    running.stop()


def _cosmos(emulator: Emulator) -> dict[str, str]:
    return {"COSMOS_ENDPOINT": emulator.endpoint, "COSMOS_KEY": EMULATOR_KEY, "COSMOS_VERIFY_TLS": "false"}


@pytest.fixture
async def host(local_host_factory, emulator):
    host = await asyncio.to_thread(local_host_factory, **_cosmos(emulator))
    yield host
    await asyncio.to_thread(host.stop)


@pytest.fixture
async def llm_host(local_host_factory, emulator, openai_server):
    host = await asyncio.to_thread(
        local_host_factory, **_cosmos(emulator),
        SWITCHBOARD_POLICY="openai", OPENAI_BASE_URL=openai_server.base_url, OPENAI_API_KEY="k",
    )
    yield host
    await asyncio.to_thread(host.stop)


async def _turns(app: httpx.AsyncClient, session: dict) -> list[dict]:
    response = await app.get(f"/api/webchat/sessions/{session['session_id']}",
                             headers={"Authorization": f"Bearer {session['token']}"})
    assert response.status_code == 200, response.text
    return response.json()["turns"]


async def test_web_chat_answers_503_while_cosmos_is_down_and_the_retried_turn_lands_once(host, emulator):
    async with httpx.AsyncClient(base_url=host.url, timeout=120) as app:
        session = (await app.post("/api/webchat/sessions")).json()
        auth = {"Authorization": f"Bearer {session['token']}"}
        messages = f"/api/webchat/sessions/{session['session_id']}/messages"
        first = await app.post(messages, json={"text": "I have a question about my bill"}, headers=auth)
        assert first.status_code == 200, first.text
        before = await _turns(app, session)

        emulator.down()
        outcomes = []
        for what, call in (
            ("a turn", lambda: app.post(messages, json={"text": "my account number is 4417"}, headers=auth)),
            ("the transcript", lambda: app.get(f"/api/webchat/sessions/{session['session_id']}", headers=auth)),
            ("a new session", lambda: app.post("/api/webchat/sessions")),
        ):
            started = time.monotonic()
            response = await call()
            took = time.monotonic() - started
            outcomes.append((what, response, took))
            print(f"\nCosmos down: {what:15} -> {response.status_code} in {took:.1f} s, Retry-After "
                  f"{response.headers.get('Retry-After')}: {response.text[:120]}", end="")
        for what, response, took in outcomes:
            assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json() == {"error": "a backing service is unavailable; try again shortly"}
            assert took < 15, f"{what} took {took:.1f} s to fail: the customer is left waiting"

        emulator.up()
        await asyncio.sleep(int(outcomes[0][1].headers["Retry-After"]))  # as the chat page does: it was told to wait
        started = time.monotonic()
        retried = await app.post(messages, json={"text": "my account number is 4417"}, headers=auth)
        print(f"\nCosmos back: the retried turn -> {retried.status_code} in {time.monotonic() - started:.1f} s")
        assert retried.status_code == 200, retried.text
        after = await _turns(app, session)
        assert after[: len(before)] == before, "the outage changed what was already there"
        added = after[len(before):]
        assert [t["role"] for t in added][:1] == ["customer"] and all(t["role"] == "agent" for t in added[1:])
        assert [t["text"] for t in added if t["role"] == "customer"] == ["my account number is 4417"], (
            "the turn refused during the outage left no half turn, and the retry landed once")
        assert len(added) >= 2, "the retried turn was answered"


async def test_cosmos_lost_between_reading_and_writing_a_turn_leaves_no_half_turn(llm_host, emulator, openai_server):
    """The turn reads the record, the model thinks, and Cosmos goes before the turn is written."""
    async with httpx.AsyncClient(base_url=llm_host.url, timeout=120) as app:
        session = (await app.post("/api/webchat/sessions")).json()
        auth = {"Authorization": f"Bearer {session['token']}"}
        messages = f"/api/webchat/sessions/{session['session_id']}/messages"
        before = await _turns(app, session)

        openai_server.reply_text("Your balance is $42.10.", delay=1.5)
        turn = asyncio.create_task(app.post(messages, json={"text": "what is my balance?"}, headers=auth))
        while len(openai_server.requests) < 1:  # the record has been read: the model is thinking
            await asyncio.sleep(0.02)
        emulator.down()
        started = time.monotonic()
        response = await turn
        print(f"\nCosmos lost mid-turn: -> {response.status_code} {time.monotonic() - started:.1f} s after the outage: "
              f"{response.text[:100]}")
        assert response.status_code == 503 and response.headers["Retry-After"], response.text

        emulator.up()
        await asyncio.sleep(int(response.headers["Retry-After"]))  # a client waits as it was told to
        assert await _turns(app, session) == before, "no half turn: neither the question nor the answer was kept"
        openai_server.reply_text("Your balance is $42.10.")
        retried = await app.post(messages, json={"text": "what is my balance?"}, headers=auth)
        assert retried.status_code == 200, retried.text
        after = await _turns(app, session)
        assert [(t["role"], t["text"]) for t in after[len(before):]] == [
            ("customer", "what is my balance?"), ("agent", "Your balance is $42.10.")]


async def test_whatsapp_events_fail_while_cosmos_is_down_and_the_redelivery_is_answered_once(host, emulator):
    async with httpx.AsyncClient(base_url=host.acs_url, timeout=60) as acs:
        async def replies() -> list[dict]:
            return [m for m in (await acs.get("/_emulator/messages", params={"to": CUSTOMER_PHONE})).json()
                    if m["kind"] == "text"]

        hello = await acs.post("/_emulator/inbound", json={"from": CUSTOMER_PHONE, "text": "hello"})
        assert hello.json()["status"] == 202, hello.text
        await _eventually(lambda: _len_at_least(replies, 1), "the first WhatsApp reply")
        answered = len(await replies())

        emulator.down()
        built = (await acs.post("/_emulator/inbound", json={"from": CUSTOMER_PHONE, "text": "what do I owe?",
                                                            "deliver": False})).json()
        event = built["event"]
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=host.url, timeout=120) as app:
            url = "/runtime/webhooks/EventGrid?functionName=whatsapp_events"
            headers = {"aeg-event-type": "Notification"}
            during = await app.post(url, json=[event], headers=headers)
            took = time.monotonic() - started
            print(f"\nCosmos down: WhatsApp event {event['id'][:8]} -> {during.status_code} in {took:.1f} s "
                  f"(Event Grid redelivers on any non-2xx)")
            assert during.status_code >= 500, during.text
            assert took < 10, f"the event took {took:.1f} s to fail"
            assert len(await replies()) == answered, "nothing was sent for an event that failed"

            emulator.up()
            await asyncio.sleep(1.0)  # Event Grid's first redelivery comes 10 s or more later; the cooldown is 1 s
            statuses = [(await app.post(url, json=[event], headers=headers)).status_code for _ in range(3)]
            print(f"Cosmos back: the same event delivered 3 more times -> {statuses}")
            assert statuses == [202, 202, 202]
        await asyncio.sleep(1.0)  # a second answer, if there were one, would be sent by now
        sent = (await replies())[answered:]
        print(f"replies to the redelivered message: {[m['content'][:60] for m in sent]}")
        # One answer (a handoff within the turn makes it two messages: the new agent's hello, then its question),
        # sent once: four deliveries of the event did not repeat any of it.
        texts = [m["content"] for m in sent]
        assert texts and len(texts) == len(set(texts)), f"answered more than once: {texts}"
        assert "account number" in texts[-1]

        # And as Event Grid does it: the emulator delivers, gets the failure, and redelivers on its own schedule.
        emulator.down()
        answered = len(await replies())
        started = time.monotonic()
        first = (await acs.post("/_emulator/inbound", json={"from": CUSTOMER_PHONE, "text": "is there an outage?"}))
        print(f"Cosmos down: delivered by the emulator -> {first.json()['status']} after "
              f"{time.monotonic() - started:.1f} s, redelivering: {first.json().get('redelivering')}")
        assert first.json()["status"] >= 500 and first.json().get("redelivering") is True, first.text
        emulator.up()
        await _eventually(lambda: _len_at_least(replies, answered + 1), "the answer to the redelivered event")
        took = time.monotonic() - started
        await asyncio.sleep(3.0)  # the emulator's next redelivery would come by now, had the first not succeeded
        texts = [m["content"] for m in (await replies())[answered:]]
        print(f"Cosmos back: answered {took:.1f} s after the first delivery: {texts}")
        assert texts and len(texts) == len(set(texts)), f"answered more than once: {texts}"


async def _len_at_least(fetch, count: int) -> bool:
    return len(await fetch()) >= count


async def _eventually(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


# A handoff through a Cosmos outage ----------------------------------------------------------------------------------

#: Longer than the minute the handoff must survive; its steps' retries (functions/handoff.py) span four.
HANDOFF_OUTAGE_SECONDS = 70


@pytest.fixture
async def handoff_host(local_host_factory, emulator):
    """The reminder and the expiry far off: the handoff waits for the customer however long the outage lasts."""
    host = await asyncio.to_thread(local_host_factory, **_cosmos(emulator), HANDOFF_REMIND_AFTER_SECONDS="900",
                                   HANDOFF_EXPIRE_AFTER_SECONDS="900")
    yield host
    await asyncio.to_thread(host.stop)


async def test_a_handoff_outlasts_a_minute_long_cosmos_outage_and_completes_once(handoff_host, emulator):
    """Defect 9: the handoff's steps read and write the customer record in Cosmos. Cosmos freezes just as a web chat
    customer accepts to move to WhatsApp, for longer than a minute; every step that runs meanwhile fails (each after
    waiting out its request timeout) and is retried with backoff. When Cosmos is back, the handoff carries on: one
    invite, the customer arrives, the orchestration completes once as engaged."""
    host = handoff_host
    async with httpx.AsyncClient(base_url=host.url, timeout=120) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=60) as acs:

        async def templates_to(number: str) -> list[dict]:
            sent = (await acs.get("/_emulator/messages", params={"to": number})).json()
            return [m for m in sent if m["kind"] == "template"]

        # The freeze must come while the handoff still has its invite to send. The handoff starts as the customer's
        # "yes" is answered and can outrun the freeze that follows the answer; then it is tried with a new customer.
        for _attempt in range(5):
            phone = f"+1444{int(time.time() * 1000) % 10**7:07d}"
            session = (await app.post("/api/webchat/sessions")).json()
            auth = {"Authorization": f"Bearer {session['token']}"}
            messages = f"/api/webchat/sessions/{session['session_id']}/messages"
            spoken = f"{phone[2:5]}-{phone[5:8]}-{phone[8:]}"
            assert (await app.post(messages, json={"text": f"my lights are out, my number is {spoken}"},
                                   headers=auth)).status_code == 200
            moved = await app.post(messages, json={"text": "can we do this on WhatsApp?"}, headers=auth)
            emulator.down()
            frozen = time.monotonic()
            assert moved.status_code == 200 and "WhatsApp message" in moved.text, moved.text
            if not await templates_to(phone):
                break
            emulator.up()
        else:
            pytest.fail("the handoff sent its invite before Cosmos could be frozen, five times in a row")
        instance_id = f"handoff-{session['session_id']}"

        async def status() -> dict:
            response = await app.get(f"/api/handoffs/{instance_id}")
            assert response.status_code == 200, response.text
            return response.json()

        async def invites() -> list[dict]:
            sent = (await acs.get("/_emulator/messages", params={"to": phone})).json()
            return [m for m in sent if m["kind"] == "template"]

        await asyncio.sleep(HANDOFF_OUTAGE_SECONDS)
        during = await status()
        failed_steps = host.stderr().count("activity handoff_")
        print(f"\nCosmos down {time.monotonic() - frozen:.0f} s: the handoff is {during['runtime_status']} at "
              f"'{during['step']}', {failed_steps} failed step attempts so far")
        assert during["runtime_status"] == "Running" and during["step"] != "failed", during
        assert await invites() == []

        emulator.up()
        back = time.monotonic()
        await _eventually(lambda: _step_is(status, "waiting"), "the handoff to send its invite", timeout=120)
        print(f"Cosmos back: the invite went out {time.monotonic() - back:.0f} s later")
        assert [m["template"] for m in await invites()] == ["switchboard_handoff_invite"]

        arrived = await acs.post("/_emulator/inbound", json={"from": phone, "text": "hi, I'm here"})
        assert arrived.status_code == 200, arrived.text
        await _eventually(lambda: _step_is(status, "engaged"), "the customer to be engaged")
        done = await status()
        assert done["runtime_status"] == "Completed" and done["output"]["outcome"] == "engaged", done
        assert len(await invites()) == 1, "the invite went out once, whatever the retries"


async def _step_is(status, step: str) -> bool:
    return (await status())["step"] == step
