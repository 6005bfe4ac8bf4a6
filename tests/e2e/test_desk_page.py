"""The desk page in headless Chromium: people at the desk talk to a customer on the chat page, on a real local host.

Each person and each customer has a browser context of their own (their own cookies and sessionStorage), as they
would on their own machines. People sign in the way the local host offers (`/.auth/login/dev?agent=NAME`), which
sets the session cookie the host turns into the platform's principal headers. The hosts here are this module's own,
so the queue holds only the customers these tests put in it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

import pytest

from tests.e2e.test_chat_page import TIMEOUT_MS, Chat, browser  # noqa: F401 - browser is a fixture

ACCOUNT, ACCOUNT_NAME = "100200300", "Jordan Lee"  # scenarios/utilities/data.yaml
VERIFY = object()  # in a customer's lines: they answer the agent's check as the account holder would


class Desk:
    """One person's desk page, recording its requests, script errors and anything the CSP blocked."""

    def __init__(self, page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.requests: list = []
        self.script_errors: list[str] = []
        self.blocked: list[str] = []
        page.on("request", lambda request: self.requests.append(request))
        page.on("pageerror", lambda exc: self.script_errors.append(str(exc)))
        page.on("console", self._console)
        page.on("dialog", lambda dialog: self.script_errors.append(f"a dialog opened: {dialog.message}"))
        page.set_default_timeout(TIMEOUT_MS)

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.blocked.append(message.text)

    async def sign_in(self, name: str, *, supervisor: bool = False) -> None:
        role = "&role=supervisor" if supervisor else ""
        await self.page.goto(f"{self.base_url}/.auth/login/dev?agent={quote(name)}{role}")
        assert self.page.url == f"{self.base_url}/api/desk", "signing in lands on the desk"
        await self.page.locator("#who strong").filter(has_text=name).wait_for()
        await self.page.locator("#desk").wait_for()

    async def set_available(self) -> None:
        await self.page.get_by_label("Available").check()
        await self.page.wait_for_function(
            "() => document.querySelector('#presence-state').textContent.startsWith(\"You're available\")"
        )

    def entry(self, name: str):
        """The queue's entry for a customer, by the name the desk shows."""
        return self.page.locator("#queue .entry").filter(has=self.page.locator(".name", has_text=name))

    async def claim(self, name: str) -> None:
        await self.entry(name).get_by_role("button", name=re.compile("^Claim")).click()
        await self.page.locator("#customer-state", has_text="With you").wait_for()

    def transcript(self):
        return self.page.locator("#transcripts .turn")

    async def write(self, text: str) -> None:
        before = await self.transcript().count()
        await self.page.get_by_label("Message to the customer").fill(text)
        await self.page.get_by_role("button", name="Send", exact=True).click()
        await self.page.wait_for_function("n => document.querySelectorAll('#transcripts .turn').length > n",
                                          arg=before)
        assert await self.page.input_value("#reply") == "", "a sent message leaves the box"

    async def escalation(self, escalation_id: str) -> dict:
        """What the desk API says of an escalation, asked with this person's cookie."""
        response = await self.page.context.request.get(f"{self.base_url}/api/desk/escalations/{escalation_id}")
        assert response.ok, await response.text()
        return await response.json()


async def write_to_desk(chat: Chat, text: str) -> None:
    """The customer sends a message that a person, not the AI, answers: no reply comes with it."""
    page = chat.page
    before = await page.locator("#log .msg.customer").count()
    await page.fill("#text", text)
    await page.click("#send")
    await page.wait_for_function(
        "n => document.querySelectorAll('#log .msg.customer').length > n && !document.querySelector('#text').disabled",
        arg=before,
    )


async def customer_lines(chat: Chat) -> list[str]:
    return [re.sub(r"^You:\s*", "", t) for t in await chat.page.locator("#log .msg.customer").all_inner_texts()]


@pytest.fixture(scope="module")
def desk_local(local_host_factory):  # type: ignore[no-untyped-def]
    """A host of this module's own: its queue holds only the customers these tests escalate."""
    return local_host_factory()


@pytest.fixture(scope="module")
def desk_host(desk_local) -> str:  # type: ignore[no-untyped-def]
    return desk_local.url


@pytest.fixture
async def contexts(browser, desk_local) -> AsyncIterator[Callable[..., Awaitable]]:  # noqa: F811 - the imported fixture
    """`await open_page(kind)`: a page in a fresh browser context ("desk" or "chat"); all closed after the test, and
    none of them may have thrown."""
    opened: list = []
    pages: list = []

    async def open_page(kind: str, base_url: str):
        context = await browser.new_context()
        opened.append(context)
        page = await context.new_page()
        wrapped = Desk(page, base_url) if kind == "desk" else Chat(page, base_url, desk_local.acs_url)
        pages.append(wrapped)
        return wrapped

    try:
        yield open_page
    finally:
        for context in opened:
            await context.close()
    errors = [e for p in pages for e in p.script_errors]
    assert not errors, f"a page threw: {errors}"
    blocked = [b for p in pages if isinstance(p, Desk) for b in p.blocked]
    assert not blocked, f"the desk page broke its own Content-Security-Policy: {blocked}"


async def escalate(chat: Chat, *lines: object) -> str:
    """The customer says `lines` (VERIFY: answers the agent's check for ACCOUNT), then asks for a person; returns
    what the AI answered to that."""
    await chat.open()
    for line in lines:
        await (chat.verify(ACCOUNT) if line is VERIFY else chat.say(str(line)))
    return await chat.say("I want to talk to a person")


async def test_a_person_at_the_desk_helps_a_chat_customer(contexts, desk_host):
    dana: Desk = await contexts("desk", desk_host)
    await dana.sign_in("Dana")
    assert await dana.page.locator("#metrics").is_hidden(), "only supervisors see the figures"
    await dana.set_available()

    customer: Chat = await contexts("chat", desk_host)
    answer = await escalate(customer, "I have a question about my bill", f"my account number is {ACCOUNT}", VERIFY)
    assert re.search(r"number 1 in line", answer), answer
    await customer.page.locator("#with", has_text="Waiting for a person").wait_for()

    # The queue shows who is waiting, on which channel, why, for how long, and the AI's summary in a line.
    entry = dana.entry(ACCOUNT_NAME)
    await entry.wait_for()
    assert await entry.locator(".channel").inner_text() == "Web chat"
    assert await entry.locator(".reason").inner_text() == "asked for a person"
    summary = await entry.locator(".summary").inner_text()
    assert summary.strip() and "\n" not in summary, f"the summary is one line: {summary!r}"
    waited = await entry.locator(".waited").inner_text()
    assert re.fullmatch(r"waiting \d+:\d\d", waited), waited
    await dana.page.wait_for_function(
        "([sel, before]) => document.querySelector(sel).textContent !== before",
        arg=["#queue .entry[data-escalation-id] .waited", waited],
    )
    assert await dana.page.title() == "(1) Desk · Switchboard", "the count shows in a tab in the background"
    assert "Now waiting: Jordan Lee, Web chat, asked for a person" in await dana.page.locator("#announce").inner_text()
    escalation_id = await entry.get_attribute("data-escalation-id")
    await dana.page.evaluate("window.stillTheSamePage = true")

    # Claiming opens the customer's whole story: what was collected, why, the summary, and the conversation.
    await dana.claim(ACCOUNT_NAME)
    page = dana.page
    assert ACCOUNT_NAME in await page.locator("#customer-h").inner_text()
    facts = dict(zip(await page.locator("#facts dt").all_inner_texts(), await page.locator("#facts dd").all_inner_texts()))
    assert facts.get("Account number") == ACCOUNT, facts
    assert await page.locator("#reason").inner_text() == "asked for a person"
    assert (await page.locator("#summary").inner_text()).strip()
    session = page.locator("#transcripts .session")
    assert await session.count() == 1 and (await session.locator("h4").inner_text()).startswith("Web chat")
    said = [re.sub(r"^Customer\s*", "", t) for t in await session.locator(".turn.customer").all_inner_texts()]
    assert said[:2] + said[3:] == [
        "I have a question about my bill", f"my account number is {ACCOUNT}", "I want to talk to a person"
    ]
    assert said[2] in ("[verification code]", "[verification answer]")  # the desk never sees the code itself
    await page.locator("#queue .entry").first.wait_for(state="detached")  # nobody else waits: the queue is empty

    # The customer sees a person join, under the person's name, marked as a person.
    joined = customer.page.locator("#log .msg.person").first
    await joined.wait_for()
    assert re.fullmatch(r"Dana\s+person", await joined.locator(".who").inner_text(), re.IGNORECASE)
    await customer.page.locator("#with", has_text="Dana (a person)").wait_for()

    # Dana writes; the customer's page shows it by itself.
    await dana.write("Hi, this is Dana")
    dana_line = customer.page.locator("#log .msg.person", has_text=re.compile(r"Hi, this is Dana$"))
    await dana_line.wait_for()
    assert await dana_line.get_attribute("data-agent") == "Dana"
    assert (await dana_line.locator(".tag").inner_text()).lower() == "person"

    # The customer answers; it reaches Dana's page without a reload, and the AI stays out of it.
    agents_before = await customer.page.locator("#log .msg.agent").count()
    await write_to_desk(customer, "Thanks Dana, the bill looks too high to me")
    await page.locator("#transcripts .turn.customer", has_text="the bill looks too high").wait_for()
    assert await page.evaluate("window.stillTheSamePage === true"), "the desk page never reloaded"
    await asyncio.sleep(0.5)
    assert await customer.page.locator("#log .msg.agent").count() == agents_before, (
        "nobody but Dana answers", "\n".join(await customer.page.locator("#log .msg").all_inner_texts()))
    lines = await customer_lines(customer)
    assert lines[:2] + lines[3:] == [
        "I have a question about my bill", f"my account number is {ACCOUNT}", "I want to talk to a person",
        "Thanks Dana, the bill looks too high to me",
    ], "each of the customer's messages shows once"  # lines[2]: what they typed to verify, on their own screen

    # A reload of the chat page keeps the person's messages as hers, and the conversation goes on.
    await customer.page.reload()
    await customer.wait_ready()
    resumed = customer.page.locator("#log .msg.person", has_text=re.compile(r"Hi, this is Dana$"))
    await resumed.wait_for()
    await dana.write("I see a meter reading estimate; I'll correct it now.")
    await customer.page.locator("#log .msg.person", has_text="meter reading estimate").wait_for()

    # Dana closes with a disposition and a note; the customer's record holds them.
    await page.get_by_label("Note for the record (optional)").fill("Estimated read corrected; new bill to follow.")
    await page.get_by_label("Disposition").select_option("resolved")
    await page.get_by_role("button", name="Close", exact=True).click()
    await page.locator("#notice", has_text="Closed as resolved").wait_for()
    await page.locator("#customer-state", has_text="Closed: resolved").wait_for()
    assert await page.locator("#reply-form").is_hidden() and await page.locator("#end-form").is_hidden()
    await page.locator("#mine .entry").first.wait_for(state="detached")

    record = await dana.escalation(escalation_id)
    assert record["escalation"]["status"] == "closed"
    assert record["escalation"]["disposition"] == "resolved"
    assert record["escalation"]["note"] == "Estimated read corrected; new bill to follow."
    assert record["escalation"]["agent_name"] == "Dana"
    await customer.page.wait_for_function(
        "() => !/a person/.test(document.querySelector('#with').textContent)"
    )
    assert not [r.url for d in (dana, customer) for r in d.requests
                if not r.url.startswith(desk_host) and not r.url.startswith("data:")], "everything is same-origin"


async def test_two_people_claim_the_same_customer_and_one_wins(contexts, desk_host):
    dana: Desk = await contexts("desk", desk_host)
    sam: Desk = await contexts("desk", desk_host)
    await dana.sign_in("Dana")
    await sam.sign_in("Sam")
    customer: Chat = await contexts("chat", desk_host)
    # An anonymous customer, whose words are markup: the desk shows them as text.
    markup = "<img src=x onerror=alert(1)> <b>help</b>"
    await escalate(customer, markup)

    entries = [desk.entry("unknown customer") for desk in (dana, sam)]
    for entry in entries:
        await entry.wait_for()
    assert await dana.page.locator("#queue .entry").count() == 1

    # Hold both claims until both are on their way, then let them go together: the server decides.
    arrived, release = asyncio.Semaphore(0), asyncio.Event()

    async def hold(route):
        arrived.release()
        await release.wait()
        await route.continue_()

    for desk in (dana, sam):
        await desk.page.route("**/claim", hold)
    clicks = [entry.get_by_role("button", name=re.compile("^Claim")).click() for entry in entries]
    await asyncio.gather(*clicks)
    await arrived.acquire()
    await arrived.acquire()
    release.set()

    outcome = {}
    for desk, name in ((dana, "Dana"), (sam, "Sam")):
        await desk.page.wait_for_function(
            "() => document.querySelector('#notice').textContent"
            " || document.querySelector('#customer-state').textContent.startsWith('With you')"
        )
        outcome[name] = await desk.page.locator("#notice").inner_text()
    winners = [name for name, notice in outcome.items() if not notice]
    assert len(winners) == 1, outcome
    winner, loser = winners[0], ({"Dana", "Sam"} - set(winners)).pop()
    desks = {"Dana": dana, "Sam": sam}
    assert outcome[loser] == f"Taken: {winner} has this customer." or outcome[loser].lower().startswith(
        f"taken: {winner.lower()} has this customer"
    ), outcome
    assert await desks[loser].page.locator("#queue .entry").count() == 0, "the loser's list drops the customer"
    assert await desks[loser].page.locator("#customer").is_hidden()

    # The winner reads the customer's words as they wrote them; nothing in them ran.
    page = desks[winner].page
    line = page.locator("#transcripts .turn.customer").first
    await line.wait_for()
    assert markup in await line.inner_text()
    assert await page.locator("#transcripts img, #transcripts b").count() == 0
    assert await page.locator("#customer-h").inner_text() == "unknown customer · Web chat"


async def test_hand_back_to_the_ai(contexts, desk_host):
    dana: Desk = await contexts("desk", desk_host)
    await dana.sign_in("Dana")
    customer: Chat = await contexts("chat", desk_host)
    await escalate(customer)
    await dana.entry("unknown customer").wait_for()
    await dana.claim("unknown customer")
    await dana.page.get_by_role("button", name="Hand back to AI").click()
    await dana.page.locator("#notice", has_text="Handed back to the AI").wait_for()

    # The chat page notices by itself, and the AI answers the customer's next message again.
    await customer.page.wait_for_function(
        "() => !/person/.test(document.querySelector('#with').textContent)"
    )
    reply = await customer.say("I have a question about my bill")
    assert re.search(r"bill|account", reply, re.IGNORECASE), reply


async def test_signed_out_the_desk_offers_sign_in(contexts, desk_host):
    desk: Desk = await contexts("desk", desk_host)
    response = await desk.page.goto(f"{desk_host}/api/desk")
    policy = response.headers.get("content-security-policy", "")
    assert "connect-src 'self'" in policy and "default-src 'none'" in policy, policy
    link = desk.page.get_by_role("link", name="Sign in")
    await link.wait_for()
    me = await desk.page.context.request.get(f"{desk_host}/api/desk/me")
    assert me.status == 401
    assert await link.get_attribute("href") == (await me.json())["sign_in"]
    assert await desk.page.locator("#desk").is_hidden()
    assert await desk.page.locator("#who").inner_text() == "Not signed in"


async def test_a_supervisor_sees_the_figures(contexts, desk_host):
    morgan: Desk = await contexts("desk", desk_host)
    await morgan.sign_in("Morgan", supervisor=True)
    await morgan.set_available()
    customer: Chat = await contexts("chat", desk_host)
    await escalate(customer)
    figures = morgan.page.locator("#metrics")
    await figures.wait_for()
    await morgan.page.locator("#metrics dd[data-metric=waiting]", has_text=re.compile(r"^[1-9]")).wait_for()
    labels = await figures.locator("dt").all_inner_texts()
    for wanted in ("Waiting", "Longest wait", "Agents available", "Escalations per hour", "Average handle time",
                   "Abandonment rate", "Handoff success rate", "Channel-switch time"):
        assert wanted in labels, labels
    values = dict(zip(labels, await figures.locator("dd").all_inner_texts()))
    assert int(values["Agents available"]) >= 1, values
    assert re.fullmatch(r"\d+:\d\d", values["Longest wait"]), values
    assert int(values["Escalations per hour"]) >= 1, values
    # Leave the queue as found: Morgan takes the customer and closes.
    entry = morgan.page.locator("#queue .entry").last
    await entry.get_by_role("button", name=re.compile("^Claim")).click()
    await morgan.page.locator("#customer-state", has_text="With you").wait_for()
    await morgan.page.get_by_label("Disposition").select_option("not_resolved")
    await morgan.page.get_by_role("button", name="Close", exact=True).click()
    await morgan.page.locator("#customer-state", has_text="Closed").wait_for()
