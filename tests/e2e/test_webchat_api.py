"""Web chat through the HTTP API of the running local host, the way a browser or a curl user drives it."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests.verifying import ASKS_TO_VERIFY, CONFIRMED, proof

ASKS_FOR_ACCOUNT = re.compile(r"account number|phone number on the account", re.I)


class WebChat:
    def __init__(self, client: httpx.Client, acs_url: str | None = None) -> None:
        created = client.post("/api/webchat/sessions")
        assert created.status_code == 201, created.text
        body = created.json()
        self.client, self.id, self.token = client, body["session_id"], body["token"]
        self.greeting = body["replies"]
        self.agent = body["agent"]
        self.acs_url = acs_url  # the host's ACS emulator: where the codes it sends can be read
        self.last = ""

    def send(self, text: str, token: str | None = None) -> httpx.Response:
        return self.client.post(
            f"/api/webchat/sessions/{self.id}/messages",
            json={"text": text},
            headers={"Authorization": f"Bearer {token or self.token}"},
        )

    def say(self, text: str) -> str:
        response = self.send(text)
        assert response.status_code == 200, response.text
        body = response.json()
        self.agent = body["agent"]
        self.last = " ".join(r["text"] for r in body["replies"])
        return self.last

    def verify(self, account: str) -> str:
        """Answer the check the agent just made as the holder of `account` would (the code from their phone, or the
        knowledge answers); returns the reply, which answers what was asked before the check."""
        reply = self.say(proof(self.last, self.acs_url, account))
        assert reply.startswith(CONFIRMED), reply
        return reply

    def transcript(self) -> list[dict]:
        response = self.client.get(f"/api/webchat/sessions/{self.id}", headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, response.text
        return response.json()["turns"]


@pytest.fixture
def client(live_host: str):
    with httpx.Client(base_url=live_host, timeout=30) as c:
        yield c


@pytest.fixture
def acs_url(live_local_host) -> str:  # type: ignore[no-untyped-def]
    return live_local_host.acs_url


def test_billing_then_outage_in_plain_words(client, acs_url: str) -> None:
    chat = WebChat(client, acs_url)
    assert chat.agent == "UtilitiesConcierge" and chat.greeting[0]["agent"] == "UtilitiesConcierge"

    reply = chat.say("hey, I need some help with my bill please")
    assert chat.agent == "BillingAgent" and ASKS_FOR_ACCOUNT.search(reply)

    reply = chat.say("100 200 300")
    assert ASKS_TO_VERIFY.search(reply) and "$" not in reply  # naming an account is not holding it
    reply = chat.verify("100200300")
    assert "$127.45" in reply and "December 15" in reply

    reply = chat.say("and now my lights are out too")
    assert chat.agent == "OutageAgent"
    assert "4:00 PM" in reply and not ASKS_FOR_ACCOUNT.search(reply)


def test_the_phone_on_the_account_is_enough_to_say_which_account(client, acs_url: str) -> None:
    chat = WebChat(client, acs_url)
    chat.say("what do I owe this month?")
    assert ASKS_TO_VERIFY.search(chat.say("the number on the account is 555-555-0111"))
    assert "$42.10" in chat.verify("+15555550111")  # the code went to that number: its holder has it
    assert "2,400" not in chat.say("is there an outage at my place?")  # Sam's street has no known outage


def test_the_transcript_has_every_turn_in_order(client, acs_url: str) -> None:
    chat = WebChat(client, acs_url)
    chat.say("billing question")
    chat.say("100200300")
    chat.verify("100200300")
    turns = chat.transcript()
    assert [t["role"] for t in turns][:2] == ["agent", "customer"]
    assert turns[1]["text"] == "billing question"
    said = [t["text"] for t in turns if t["role"] == "customer"]
    assert said[-1] in ("[verification code]", "[verification answer]")  # what was said to verify is not kept
    assert "$127.45" in turns[-1]["text"]


def test_another_sessions_token_is_refused(client) -> None:
    alice, bob = WebChat(client), WebChat(client)
    assert alice.send("hello", token=bob.token).status_code == 403
    peek = client.get(f"/api/webchat/sessions/{alice.id}", headers={"Authorization": f"Bearer {bob.token}"})
    assert peek.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer forged.token"}],
)
def test_a_missing_or_forged_token_gets_401(client, headers) -> None:
    chat = WebChat(client)
    response = client.post(f"/api/webchat/sessions/{chat.id}/messages", json={"text": "hi"}, headers=headers)
    assert response.status_code == 401 and response.json()["error"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "text: Field required"),
        (b'{"text": 42}', "text: Input should be a valid string"),
        (b'{"text": "   "}', "text: String should hold something other than whitespace"),
        (b'{"text": "' + b"a" * 2001 + b'"}', "text: String should have at most 2000 characters"),
        (b'{"text": "hi", "admin": true}', "unknown field"),
    ],
)
def test_malformed_input_gets_a_clear_400_and_stores_nothing(client, body: bytes, says: str) -> None:
    chat = WebChat(client)
    before = chat.transcript()
    response = client.post(
        f"/api/webchat/sessions/{chat.id}/messages",
        content=body,
        headers={"Authorization": f"Bearer {chat.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert chat.transcript() == before


def test_creating_a_session_with_unknown_fields_is_refused(client) -> None:
    response = client.post("/api/webchat/sessions", json={"customer_id": "someone-else"})
    assert response.status_code == 400 and "unknown field" in response.json()["error"]


def test_the_chat_page_is_served(client) -> None:
    page = client.get("/api/webchat")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="send"' in page.text and 'id="text"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def _send_with_key(chat: WebChat, text: str, key: str) -> httpx.Response:
    return chat.client.post(
        f"/api/webchat/sessions/{chat.id}/messages",
        json={"text": text},
        headers={"Authorization": f"Bearer {chat.token}", "Idempotency-Key": key},
    )


def test_a_retried_message_with_the_same_idempotency_key_runs_one_turn(client, acs_url: str) -> None:
    """A browser that lost the answer (timeout, dropped connection) resends under the same key: it gets the first
    answer, and the transcript holds the message once."""
    chat = WebChat(client, acs_url)
    first = _send_with_key(chat, "hey, I need some help with my bill please", "k-1")
    again = _send_with_key(chat, "hey, I need some help with my bill please", "k-1")
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json() == first.json() and first.json()["agent"] == "BillingAgent"

    other = _send_with_key(chat, "100 200 300", "k-2")
    asked = " ".join(r["text"] for r in other.json()["replies"])
    answer = proof(asked, acs_url, "100200300")
    verified = _send_with_key(chat, answer, "k-3")
    again = _send_with_key(chat, answer, "k-3")  # the code checked once: a retry gets the first answer, not "wrong"
    assert verified.json() == again.json()
    assert "$127.45" in " ".join(r["text"] for r in again.json()["replies"])
    customer_turns = [t["text"] for t in chat.transcript() if t["role"] == "customer"]
    assert customer_turns[:2] == ["hey, I need some help with my bill please", "100 200 300"]
    assert len(customer_turns) == 3


def test_concurrent_retries_under_one_key_run_one_turn(client, live_host: str) -> None:
    chat = WebChat(client)

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_host, timeout=30) as http:
            return await asyncio.gather(*(
                http.post(f"/api/webchat/sessions/{chat.id}/messages", json={"text": "my lights are out"},
                          headers={"Authorization": f"Bearer {chat.token}", "Idempotency-Key": "same"})
                for _ in range(6)
            ))

    answers = asyncio.run(send_all())
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert len({str(a.json()) for a in answers}) == 1  # every retry got the one answer
    assert [t["role"] for t in chat.transcript()].count("customer") == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "naïve"])
def test_a_malformed_idempotency_key_gets_400_and_stores_nothing(client, key: str) -> None:
    chat = WebChat(client)
    response = chat.client.post(
        f"/api/webchat/sessions/{chat.id}/messages", json={"text": "hello"},
        headers={"Authorization": f"Bearer {chat.token}", "Idempotency-Key": key.encode("utf-8")},
    )
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["error"]
    assert [t["role"] for t in chat.transcript()] == ["agent"]  # the greeting only
