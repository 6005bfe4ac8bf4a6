"""The people in these tests, over real HTTP: someone at the desk (signed in with the local host's dev sign-in) and a
web chat customer, each with their own client, as they would be on their own machines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

COOKIE = "AppServiceAuthSession"
#: Every desk route that needs someone signed in, as (method, path); {id} is an escalation id.
DESK_ROUTES = [
    ("GET", "/api/desk/me"),
    ("POST", "/api/desk/presence"),
    ("GET", "/api/desk/queue"),
    ("GET", "/api/desk/metrics"),
    ("GET", "/api/desk/escalations/{id}"),
    ("POST", "/api/desk/escalations/{id}/claim"),
    ("POST", "/api/desk/escalations/{id}/messages"),
    ("POST", "/api/desk/escalations/{id}/return"),
    ("POST", "/api/desk/escalations/{id}/close"),
]
#: A body each route would accept, so a refusal is about who asks, not what they send.
GOOD_BODIES: dict[str, Any] = {
    "/api/desk/presence": {"status": "available"},
    "/api/desk/escalations/{id}/messages": {"text": "Hello"},
    "/api/desk/escalations/{id}/return": {"note": "back to the assistant"},
    "/api/desk/escalations/{id}/close": {"disposition": "resolved"},
}


async def sign_in(base_url: str, name: str, *, supervisor: bool = False) -> str:
    """The session cookie the local host's dev sign-in sets for `name`."""
    params = {"agent": name, **({"role": "supervisor"} if supervisor else {})}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        response = await client.get("/.auth/login/dev", params=params)
    assert response.status_code == 302, response.text
    return response.cookies[COOKIE]


class Person:
    """Someone at the desk, with their own client carrying their session cookie."""

    def __init__(self, base_url: str, name: str, cookie: str) -> None:
        self.name = name
        self.client = httpx.AsyncClient(base_url=base_url, timeout=60, headers={"Cookie": f"{COOKIE}={cookie}"})

    @classmethod
    async def signed_in(cls, base_url: str, name: str, *, supervisor: bool = False) -> Person:
        return cls(base_url, name, await sign_in(base_url, name, supervisor=supervisor))

    async def close(self) -> None:
        await self.client.aclose()

    async def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.client.request(method, path, **kwargs)
        assert response.status_code == 200, f"{method} {path} -> {response.status_code} {response.text}"
        return response.json()

    async def available(self) -> dict[str, Any]:
        return await self.ok("POST", "/api/desk/presence", json={"status": "available"})

    async def queue(self, **params: Any) -> dict[str, Any]:
        return await self.ok("GET", "/api/desk/queue", params=params)

    async def waiting_for(self, session_id: str) -> dict[str, Any]:
        """The queue's entry for a customer's session (other customers may be waiting too)."""
        entries = [e for e in (await self.queue())["waiting"] if e["session_id"] == session_id]
        assert entries, f"session {session_id} is not in the queue"
        return entries[0]

    def claim(self, escalation_id: str) -> Any:
        return self.client.post(f"/api/desk/escalations/{escalation_id}/claim")

    async def say(self, escalation_id: str, text: str) -> dict[str, Any]:
        return await self.ok("POST", f"/api/desk/escalations/{escalation_id}/messages", json={"text": text})

    async def context(self, escalation_id: str) -> dict[str, Any]:
        return await self.ok("GET", f"/api/desk/escalations/{escalation_id}")


@dataclass
class Customer:
    """A web chat customer: their session and its token."""

    client: httpx.AsyncClient
    session_id: str
    token: str

    @classmethod
    async def start(cls, client: httpx.AsyncClient) -> Customer:
        created = await client.post("/api/webchat/sessions")
        assert created.status_code == 201, created.text
        return cls(client, created.json()["session_id"], created.json()["token"])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def send(self, text: str) -> dict[str, Any]:
        response = await self.client.post(f"/api/webchat/sessions/{self.session_id}/messages", json={"text": text},
                                          headers=self.auth)
        assert response.status_code == 200, response.text
        return response.json()

    async def session(self, **params: Any) -> dict[str, Any]:
        response = await self.client.get(f"/api/webchat/sessions/{self.session_id}", params=params,
                                         headers=self.auth)
        assert response.status_code == 200, response.text
        return response.json()


async def customer_asking_for_a_person(client: httpx.AsyncClient, *, first: str | None = None) -> Customer:
    """A new web chat customer who (after `first`, if given) asks for a person."""
    customer = await Customer.start(client)
    if first:
        await customer.send(first)
    await customer.send("I want to talk to a person")
    return customer
