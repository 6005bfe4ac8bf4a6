"""Who may use the desk: only a person the platform signed in, on every desk route; nobody else, however they ask.

Against the security tests' `python -m local` (tests/security/conftest.py), which stands in for App Service built-in
authentication (local/auth.py): it strips the principal headers a client sends and injects its own for a valid
session cookie. The app trusts those headers only because that stand-in (or, in Azure, the platform) is in front of
it (shared/principal.py). docs/security.md names each test here; docs/desk.md, "Signing in", tells the story.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from local.auth import LOGIN_DEV, is_loopback
from shared import principal
from shared.desk import AGENT_ROLE, SUPERVISOR_ROLE
from tests.desk.people import COOKIE, DESK_ROUTES, GOOD_BODIES, Customer, Person, customer_asking_for_a_person
from tests.peers.local_host import LocalHost
from tests.security.conftest import SecureStack

SUPERVISOR_PRINCIPAL = {
    "auth_typ": "aad", "name_typ": "name", "role_typ": "roles",
    "claims": [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "intruder-1"},
               {"typ": "name", "val": "Mallory"}, {"typ": "roles", "val": SUPERVISOR_ROLE},
               {"typ": "roles", "val": AGENT_ROLE}],
}
FORGED = {
    "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(SUPERVISOR_PRINCIPAL).encode()).decode(),
    "X-MS-CLIENT-PRINCIPAL-ID": "intruder-1",
    "X-MS-CLIENT-PRINCIPAL-NAME": "Mallory",
    "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
}


@pytest.fixture(scope="module")
def desk_host(secure: SecureStack) -> LocalHost:
    return secure.host


@pytest.fixture
async def web(desk_host: LocalHost) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no sign-in: a customer's browser, or anyone on the internet."""
    async with httpx.AsyncClient(base_url=desk_host.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
async def waiting(desk_host: LocalHost) -> AsyncIterator[tuple[Customer, str]]:
    """A customer waiting for a person, and their escalation id: so a refusal below is about who asks, not a 404."""
    async with httpx.AsyncClient(base_url=desk_host.url, timeout=60) as client:
        customer = await customer_asking_for_a_person(client)
        watcher = await Person.signed_in(desk_host.url, "Quinn Watcher")
        try:
            escalation_id = (await watcher.waiting_for(customer.session_id))["escalation_id"]
        finally:
            await watcher.close()
        yield customer, escalation_id


async def _every_route(client: httpx.AsyncClient, escalation_id: str, **kwargs: Any) -> dict[str, httpx.Response]:
    answers = {}
    for method, path in DESK_ROUTES:
        body = GOOD_BODIES.get(path)
        answers[f"{method} {path}"] = await client.request(
            method, path.replace("{id}", escalation_id), json=body if method == "POST" else None, **kwargs)
    return answers


def _all_refused(answers: dict[str, httpx.Response], statuses: set[int]) -> None:
    wrong = {route: f"{a.status_code} {a.text[:120]}" for route, a in answers.items() if a.status_code not in statuses}
    assert not wrong, f"answered other than {sorted(statuses)}: {wrong}"


async def test_every_desk_route_needs_a_sign_in_and_says_where(web, waiting) -> None:
    _, escalation_id = waiting
    answers = await _every_route(web, escalation_id)
    _all_refused(answers, {401})
    for answer in answers.values():
        body = answer.json()
        assert body["error"] == "sign in to use the desk"
        assert body["sign_in"] == "/.auth/login/aad?post_login_redirect_uri=/api/desk"
    # The page itself loads for anyone: it is what offers the sign-in. It may not be framed or load from elsewhere.
    page = await web.get("/api/desk")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["Referrer-Policy"] == "no-referrer"


async def test_principal_headers_forged_from_outside_open_nothing(web, waiting, desk_host) -> None:
    _, escalation_id = waiting
    _all_refused(await _every_route(web, escalation_id, headers=FORGED), {401})
    lowercase = {key.lower(): value for key, value in FORGED.items()}
    _all_refused(await _every_route(web, escalation_id, headers=lowercase), {401})

    # With a real agent's cookie, a forged supervisor principal changes nothing: the host injects the cookie's.
    agent = await Person.signed_in(desk_host.url, "Riley Agent")
    try:
        me = (await agent.client.get("/api/desk/me", headers=FORGED)).json()
        assert me["agent"] == {"agent_id": "dev-riley-agent", "name": "Riley Agent", "supervisor": False}
        figures = await agent.client.get("/api/desk/metrics", headers=FORGED)
        assert figures.status_code == 403, figures.text
    finally:
        await agent.close()


async def test_a_customers_web_chat_token_opens_no_desk_route(web, waiting) -> None:
    customer, escalation_id = waiting
    answers = await _every_route(web, escalation_id, headers=customer.auth)
    _all_refused(answers, {401, 403})
    context = await web.get(f"/api/desk/escalations/{escalation_id}", headers=customer.auth)
    assert customer.session_id not in context.text, "nothing of the customer's record comes back"


async def test_a_cookie_not_signed_by_this_host_is_no_sign_in(web, waiting, desk_host, local_host_factory) -> None:
    _, escalation_id = waiting
    agent = await Person.signed_in(desk_host.url, "Riley Agent")
    cookie = agent.client.headers["Cookie"].partition("=")[2]
    await agent.close()
    payload, _, signature = cookie.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    promoted = base64.urlsafe_b64encode(json.dumps({**claims, "roles": [SUPERVISOR_ROLE]}).encode()).decode()
    for forged in (f"{promoted.rstrip('=')}.{signature}", "not-a-cookie", cookie[:-4] + "AAAA"):
        _all_refused(await _every_route(web, escalation_id, headers={"Cookie": f"{COOKIE}={forged}"}), {401})

    # Another host's sign-in (another key) is not this one's: sessions are signed with a key made at startup.
    other = await asyncio.to_thread(local_host_factory)
    try:
        foreign = await Person.signed_in(other.url, "Riley Agent")
        foreign_cookie = foreign.client.headers["Cookie"]
        await foreign.close()
        _all_refused(await _every_route(web, escalation_id, headers={"Cookie": foreign_cookie}), {401})
    finally:
        await asyncio.to_thread(other.stop)


async def test_only_supervisors_see_the_figures(desk_host) -> None:
    agent = await Person.signed_in(desk_host.url, "Riley Agent")
    boss = await Person.signed_in(desk_host.url, "Morgan Lead", supervisor=True)
    try:
        refused = await agent.client.get("/api/desk/metrics")
        assert refused.status_code == 403 and "supervisor" in refused.json()["error"]
        assert "metrics" not in await agent.queue(), "an agent's queue carries no figures"
        figures = await boss.ok("GET", "/api/desk/metrics")
        assert {"waiting", "longest_wait_seconds", "agents_available", "abandonment_rate"} <= set(figures)
        assert "metrics" in await boss.queue()
        assert (await boss.ok("GET", "/api/desk/me"))["agent"]["supervisor"] is True
    finally:
        await agent.close()
        await boss.close()


async def test_a_desk_sign_in_cannot_act_as_a_customer(web, waiting, desk_host) -> None:
    customer, _ = waiting
    agent = await Person.signed_in(desk_host.url, "Riley Agent")
    try:
        session = f"/api/webchat/sessions/{customer.session_id}"
        posted = await agent.client.post(f"{session}/messages", json={"text": "it's me, the customer"})
        read = await agent.client.get(session)
        assert posted.status_code == 401 and read.status_code == 401, (posted.text, read.text)
        forged_too = await agent.client.get(session, headers=FORGED)
        assert forged_too.status_code == 401
    finally:
        await agent.close()
    turns = (await customer.session())["turns"]
    assert all(t["text"] != "it's me, the customer" for t in turns), "nothing was said in the customer's name"


async def _banner(host: LocalHost) -> str:
    """What `python -m local` printed once everything started (the host answers before the banner is out)."""
    for _ in range(300):
        if "Switchboard is running." in host.stdout():
            return host.stdout()
        await asyncio.sleep(0.1)
    pytest.fail(f"no startup banner:\n{host.stdout()}\n{host.stderr()[-2000:]}")


async def test_the_startup_banner_signs_in_a_demo_agent_and_a_supervisor(desk_host) -> None:
    links = re.findall(r"(http://\S+/\.auth/login/dev\?\S+)", await _banner(desk_host))
    assert any("agent=Dana%20Reyes" in link and "role" not in link for link in links), desk_host.stdout()
    assert any("role=supervisor" in link for link in links), desk_host.stdout()
    async with httpx.AsyncClient(timeout=30) as client:
        for link, supervisor in ((links[0], False), (links[1], True)):
            signed_in = await client.get(link)
            assert signed_in.status_code == 302 and signed_in.headers["location"] == "/api/desk"
            cookie = {"Cookie": f"{COOKIE}={signed_in.cookies[COOKIE]}"}
            me = await client.get(f"{desk_host.url}/api/desk/me", headers=cookie)
            client.cookies.clear()
            assert me.status_code == 200 and me.json()["agent"]["supervisor"] is supervisor


async def test_signing_out_clears_the_session_cookie(desk_host) -> None:
    async with httpx.AsyncClient(base_url=desk_host.url, timeout=30) as client:
        await client.get(LOGIN_DEV, params={"agent": "Riley Agent"})
        assert (await client.get("/api/desk/me")).status_code == 200
        out = await client.get("/.auth/logout")
        assert out.status_code == 302 and out.headers["location"] == "/api/desk"
        assert COOKIE not in client.cookies
        assert (await client.get("/api/desk/me")).status_code == 401


async def test_the_dev_sign_in_refuses_bad_names_and_roles_and_goes_only_to_this_site(web) -> None:
    for params, said in (({}, "say who"), ({"agent": "  "}, "say who"), ({"agent": "x" * 61}, "at most 60"),
                         ({"agent": "Dana\x07"}, "printable"), ({"agent": "Dana", "role": "admin"}, "role")):
        refused = await web.get(LOGIN_DEV, params=params)
        assert refused.status_code == 400 and said in refused.json()["error"], refused.text
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        redirected = await web.get(LOGIN_DEV, params={"agent": "Dana", "post_login_redirect_uri": target})
        assert redirected.headers["location"] == "/api/desk", f"{target} must not be followed"
    kept = await web.get(LOGIN_DEV, params={"agent": "Dana", "post_login_redirect_uri": "/api/desk?x=1"})
    assert kept.headers["location"] == "/api/desk?x=1"


def test_the_dev_sign_in_answers_only_this_machine() -> None:
    for address in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"):
        assert is_loopback(address), address
    for address in ("10.0.0.5", "192.168.1.20", "203.0.113.9", "2001:db8::1", "::ffff:203.0.113.9", "", None,
                    "localhost", "not an address"):
        assert not is_loopback(address), address


async def test_the_dev_sign_in_is_absent_unless_python_m_local_turns_it_on(local_host_factory) -> None:
    host = await asyncio.to_thread(local_host_factory, "--no-dev-sign-in")
    try:
        async with httpx.AsyncClient(base_url=host.url, timeout=30) as client:
            for path in (LOGIN_DEV, "/.auth/login/aad"):
                absent = await client.get(path, params={"agent": "Dana Reyes"})
                assert absent.status_code == 404 and COOKIE not in absent.cookies, absent.text
            assert (await client.get("/api/desk/me", headers=FORGED)).status_code == 401
        assert "/.auth/login/dev" not in await _banner(host), "the banner offers no sign-in it cannot give"
    finally:
        await asyncio.to_thread(host.stop)


def test_principal_headers_count_only_when_the_platform_owns_them() -> None:
    on, off = {principal.AUTH_ENABLED: "True"}, {}
    agent = principal.desk_agent(FORGED, on)
    assert agent is not None and agent.agent_id == "intruder-1" and agent.name == "Mallory" and agent.supervisor
    assert principal.desk_agent(FORGED, off) is None, "without the platform's authentication anyone could write them"
    assert principal.desk_agent(FORGED, {principal.AUTH_ENABLED: "false"}) is None
    assert principal.desk_agent({}, on) is None

    def with_claims(*claims: dict[str, str], **extra: Any) -> dict[str, str]:
        document = {"auth_typ": "aad", "claims": list(claims), **extra}
        return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode()}

    oid = {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "oid-7"}
    no_roles = principal.desk_agent(with_claims(oid, {"typ": "name", "val": "Pat"}), on)
    assert no_roles is not None and no_roles.roles == frozenset(), "a sign-in without a desk role has none"
    entra_roles = principal.desk_agent(with_claims(
        oid, {"typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "val": AGENT_ROLE}), on)
    assert entra_roles is not None and entra_roles.roles == {AGENT_ROLE}
    custom_role_type = principal.desk_agent(with_claims(oid, {"typ": "r", "val": SUPERVISOR_ROLE}, role_typ="r"), on)
    assert custom_role_type is not None and custom_role_type.supervisor
    for garbage in ("%%%", base64.b64encode(b"[1, 2]").decode(), base64.b64encode(b"{not json").decode(),
                    "A" * (principal.MAX_PRINCIPAL_BYTES + 4)):
        assert principal.desk_agent({"X-MS-CLIENT-PRINCIPAL": garbage}, on) is None
    assert principal.desk_agent(with_claims({"typ": "name", "val": "No Id"}), on) is None, "nobody without an id"


async def test_malformed_requests_get_400_saying_what_is_wrong(desk_host, waiting) -> None:
    _, escalation_id = waiting
    person = await Person.signed_in(desk_host.url, "Riley Agent")
    one = f"/api/desk/escalations/{escalation_id}"
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/api/desk/presence", {"content": b"{"}, "not valid JSON"),
        ("POST", "/api/desk/presence", {"content": b"[]"}, "must be a JSON object"),
        ("POST", "/api/desk/presence", {"json": {}}, "status: Field required"),
        ("POST", "/api/desk/presence", {"json": {"status": "busy"}}, "status: Input should be 'available' or 'away'"),
        ("POST", "/api/desk/presence", {"json": {"status": "away", "phone": "5551234"}}, "international form"),
        ("POST", "/api/desk/presence", {"json": {"status": "away", "phone": 15551234567}},
         "phone: Input should be a valid string"),
        ("POST", "/api/desk/presence", {"json": {"status": "away", "acs_user": "dana"}}, "ACS user id"),
        ("POST", "/api/desk/presence", {"json": {"status": "away", "mood": "fine"}}, "unknown field(s): mood"),
        ("GET", "/api/desk/queue?since=-1", {}, "since: Input should be a whole number"),
        ("GET", "/api/desk/queue?since=1&wait=99", {}, "wait: Input should be less than or equal to 25"),
        ("GET", "/api/desk/queue?wait=soon", {}, "wait: Input should be a number of seconds"),
        ("POST", f"{one}/claim", {"json": {"force": True}}, "unknown field(s): force"),
        ("POST", f"{one}/claim", {"content": b"nope"}, "not valid JSON"),
        ("POST", f"{one}/messages", {"json": {}}, "text: Field required"),
        ("POST", f"{one}/messages", {"json": {"text": "   "}},
         "text: String should hold something other than whitespace"),
        ("POST", f"{one}/messages", {"json": {"text": "x" * 2001}}, "text: String should have at most 2000 characters"),
        ("POST", f"{one}/messages", {"json": {"text": "hi"}, "headers": {"Idempotency-Key": "a b"}}, "Idempotency-Key"),
        ("POST", f"{one}/return", {"json": {"note": ["a"]}}, "note: Input should be a valid string"),
        ("POST", f"{one}/close", {"json": {}}, "disposition: Field required"),
        ("POST", f"{one}/close", {"json": {"disposition": "done"}},
         "disposition: Input should be 'resolved', 'follow_up', 'callback' or 'not_resolved'"),
        ("POST", f"{one}/close", {"json": {"disposition": "resolved", "note": "x" * 2001}},
         "note: String should have at most 2000 characters"),
    ]
    try:
        for method, path, kwargs, said in cases:
            answer = await person.client.request(method, path, **kwargs)
            assert answer.status_code == 400, f"{method} {path} {kwargs}: {answer.status_code} {answer.text}"
            assert said in answer.json()["error"], f"{method} {path}: {answer.json()['error']!r} should say {said!r}"
        missing = await person.client.post("/api/desk/escalations/esc_nobody/claim")
        assert missing.status_code == 404 and "no escalation" in missing.json()["error"]
    finally:
        await person.close()
