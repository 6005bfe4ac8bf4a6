"""The web chat page in headless Chromium against a real local host (offline policy, utilities scenario).

Uses the machine's Chromium (`apt-get install chromium`), never a browser Playwright downloads. Each test gets a
fresh browser context, so sessionStorage (where the page keeps its session) starts empty.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil

import pytest

from tests.peers import unavailable
from tests.verifying import ASKS_TO_VERIFY, CONFIRMED, proof

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


def chromium_path() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.fixture(scope="module")
async def browser():
    executable = chromium_path()
    if executable is None:
        unavailable("Chromium is not installed: apt-get install chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("the playwright package is not installed: pip install -r requirements-dev.txt")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


class Chat:
    """One tab on the chat page, recording every request it makes and every script error."""

    def __init__(self, page, base_url: str, acs_url: str | None = None) -> None:
        self.page = page
        self.base_url = base_url
        self.acs_url = acs_url  # the host's ACS emulator: the customer's phone, where codes go
        self.last = ""
        self.requests: list = []
        self.script_errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request))
        page.on("pageerror", lambda exc: self.script_errors.append(str(exc)))
        page.set_default_timeout(TIMEOUT_MS)

    async def open(self, query: str = "") -> None:
        await self.page.goto(f"{self.base_url}/api/webchat{query}")
        await self.wait_ready()

    async def wait_ready(self) -> None:
        """The greeting (or the resumed transcript) is shown and the box accepts text."""
        await self.page.locator("#log .msg.agent").first.wait_for()
        await self.page.wait_for_function("() => !document.querySelector('#text').disabled")

    async def agent_messages(self) -> list[str]:
        return await self.page.locator("#log .msg.agent").all_inner_texts()

    async def say(self, text: str, *, press_enter: bool = False) -> str:
        """Send a message and return the text of the agent messages it brought."""
        before = await self.page.locator("#log .msg.agent").count()
        await self.page.fill("#text", text)
        if press_enter:
            await self.page.press("#text", "Enter")
        else:
            await self.page.click("#send")
        await self.page.wait_for_function(
            "n => document.querySelectorAll('#log .msg.agent').length > n && !document.querySelector('#text').disabled",
            arg=before,
        )
        self.last = "\n".join((await self.agent_messages())[before:])
        return self.last

    async def verify(self, account: str) -> str:
        """Type what proves the customer holds `account` (the code from their phone, or the knowledge answers), as
        the agent just asked; returns the reply, which answers what was asked before the check."""
        reply = await self.say(await asyncio.to_thread(proof, self.last, self.acs_url, account))
        assert CONFIRMED in reply.split("\n")[:2], reply  # under the agent's name
        return reply

    def session_posts(self) -> list:
        return [r for r in self.requests if r.method == "POST" and r.url.endswith("/api/webchat/sessions")]


@pytest.fixture
async def chat(browser, live_local_host):
    context = await browser.new_context()
    page = await context.new_page()
    chat = Chat(page, live_local_host.url, live_local_host.acs_url)
    try:
        yield chat
    finally:
        await context.close()
    assert not chat.script_errors, f"the page threw: {chat.script_errors}"


async def test_a_billing_conversation(chat):
    await chat.open()
    page = chat.page
    greeting = await chat.agent_messages()
    assert len(greeting) == 1 and "Springfield Power & Water" in greeting[0]
    assert await page.locator("#log .msg.agent .who").first.inner_text() == "Utilities Concierge"
    assert await page.locator("#error").is_hidden()
    assert await page.evaluate("document.activeElement.id") == "text", "the message box has the focus"

    reply = await chat.say("I have a question about my bill")
    assert re.search(r"bill|account", reply, re.IGNORECASE), reply
    billing = page.locator("#log .msg.agent").last
    assert await billing.get_attribute("data-agent") == "BillingAgent"
    assert await billing.locator(".who").inner_text() == "Billing"
    assert "Billing" in await page.locator("#with").inner_text()

    reply = await chat.say("my account number is 100200300", press_enter=True)
    assert ASKS_TO_VERIFY.search(reply) and "$" not in reply, reply
    reply = await chat.verify("100200300")
    assert "$127.45" in reply, reply

    customer = await page.locator("#log .msg.customer").all_inner_texts()
    assert [re.sub(r"^You:\s*", "", t) for t in customer][:2] == [
        "I have a question about my bill", "my account number is 100200300"
    ]
    assert await page.input_value("#text") == "", "a sent message leaves the box"
    assert len(chat.session_posts()) == 1


async def test_reload_keeps_the_transcript(chat):
    await chat.open()
    await chat.say("I have a question about my bill")
    await chat.say("my account number is 100200300")
    proved = await asyncio.to_thread(proof, chat.last, chat.acs_url, "100200300")
    await chat.verify("100200300")
    page = chat.page
    before = await page.locator("#log .msg").evaluate_all(
        "els => els.map(e => [e.classList.contains('customer') ? 'customer' : 'agent', e.textContent])"
    )
    # The record keeps no code or answer: reloaded, what the customer typed to verify reads as a placeholder.
    masked = "[verification code]" if proved.isdigit() else "[verification answer]"
    before = [[who, f"You:{masked}" if text == f"You:{proved}" else text] for who, text in before]
    stored = json.loads(await page.evaluate("sessionStorage.getItem('switchboard.webchat')"))

    await page.reload()
    await chat.wait_ready()
    await page.wait_for_function("n => document.querySelectorAll('#log .msg').length >= n", arg=len(before))
    after = await page.locator("#log .msg").evaluate_all(
        "els => els.map(e => [e.classList.contains('customer') ? 'customer' : 'agent', e.textContent])"
    )
    assert after == before
    assert len(chat.session_posts()) == 1, "a reload resumes the session instead of creating one"
    assert json.loads(await page.evaluate("sessionStorage.getItem('switchboard.webchat')")) == stored
    assert any(r.method == "GET" and r.url.endswith(f"/sessions/{stored['session_id']}") for r in chat.requests)

    # ... and the conversation carries on where it was: the account is already known.
    reply = await chat.say("when is it due?")
    assert "December 15" in reply or "$127.45" in reply, reply


async def test_input_is_disabled_while_waiting_and_typing_shows(chat):
    await chat.open()
    page = chat.page
    release = asyncio.Event()

    async def hold(route):
        await release.wait()
        await route.continue_()

    await page.route("**/messages", hold)
    await page.fill("#text", "I have a question about my bill")
    await page.click("#send")
    await page.wait_for_function("() => document.querySelector('#text').disabled")
    assert await page.locator("#send").is_disabled()
    assert "typing" in (await page.locator("#typing").inner_text()).lower()
    assert await page.locator("#log .msg.customer").count() == 1, "the customer's message shows at once"
    release.set()
    await page.wait_for_function("() => !document.querySelector('#text').disabled")
    assert await page.locator("#typing").inner_text() == ""
    await page.unroute("**/messages")


async def test_errors_are_shown_inline(chat):
    await chat.open()
    page = chat.page
    agents_before = await page.locator("#log .msg.agent").count()

    # A 400 from the API: its error text, the message not kept in the log, the text given back to edit.
    too_long = "x" * 2001
    await page.fill("#text", too_long)
    await page.click("#send")
    error = page.locator("#error")
    await error.wait_for(state="visible")
    assert "2000" in await error.inner_text()
    assert await error.get_attribute("role") == "alert"
    assert await page.locator("#log .msg.customer").count() == 0
    assert await page.input_value("#text") == too_long
    await page.wait_for_function("() => !document.querySelector('#text').disabled")

    # A 503 with Retry-After: the error and when to try again.
    async def unavailable_503(route):
        await route.fulfill(status=503, headers={"Retry-After": "7", "Content-Type": "application/json"},
                            body=json.dumps({"error": "a backing service is unavailable; try again shortly"}))

    await page.route("**/messages", unavailable_503)
    await page.fill("#text", "hello")
    await page.click("#send")
    await page.wait_for_function("() => document.querySelector('#error').textContent.includes('unavailable')")
    text = await error.inner_text()
    assert "7 seconds" in text, text
    await page.unroute("**/messages")

    # A retry that works clears the error.
    await page.wait_for_function("() => !document.querySelector('#text').disabled")
    await chat.say("I have a question about my bill")
    assert await error.is_hidden()
    assert await page.locator("#log .msg.agent").count() > agents_before


async def test_a_lost_session_offers_a_new_chat(chat):
    await chat.open()
    page = chat.page
    # Break the stored token: the API answers 401, the page says the chat cannot continue.
    await page.evaluate(
        "() => { const s = JSON.parse(sessionStorage.getItem('switchboard.webchat'));"
        " s.token = 'forged.token'; sessionStorage.setItem('switchboard.webchat', JSON.stringify(s)); }"
    )
    await page.reload()  # resuming with a bad token starts a fresh session instead of a dead page
    await chat.wait_ready()
    assert len(chat.session_posts()) == 2
    assert await page.locator("#error").is_hidden()
    assert await page.locator("#log .msg").count() == 1, "only the new greeting"

    await page.click("#restart")
    await chat.wait_ready()
    assert len(chat.session_posts()) == 3
    assert await page.locator("#log .msg").count() == 1


async def test_display_names(chat):
    await chat.open()
    names = await chat.page.evaluate(
        "['BillingAgent', 'UtilitiesConcierge', 'OutageAgent', 'FAQAgent', 'Agent', 'claims_agent', '']"
        ".map(window.switchboardChat.displayName)"
    )
    assert names == ["Billing", "Utilities Concierge", "Outage", "FAQ", "Agent", "claims", "Agent"]


async def test_handoff_link_sends_the_token(chat):
    page = chat.page
    await page.goto(f"{chat.base_url}/api/webchat?handoff=abc.def")
    await page.wait_for_function(
        "() => document.querySelector('#log .msg') || !document.querySelector('#error').hidden"
    )
    posts = chat.session_posts()
    assert len(posts) == 1
    assert json.loads(posts[0].post_data) == {"handoff_token": "abc.def"}


async def test_accessible_and_self_contained(chat):
    await chat.open()
    page = chat.page
    assert await page.locator("#log").get_attribute("aria-live") == "polite"
    assert await page.locator("#log").get_attribute("role") == "log"
    assert await page.get_by_label("Your message").get_attribute("id") == "text"
    assert await page.get_by_role("button", name="Send").get_attribute("id") == "send"
    assert await page.locator("html").get_attribute("lang") == "en"
    await chat.say("I have a question about my bill")
    foreign = [r.url for r in chat.requests if not r.url.startswith(chat.base_url) and not r.url.startswith("data:")]
    assert not foreign, f"the page must work offline, but it fetched {foreign}"


async def test_fits_a_phone_screen(browser, live_host):
    context = await browser.new_context(viewport={"width": 360, "height": 640}, is_mobile=True, has_touch=True)
    try:
        chat = Chat(await context.new_page(), live_host)
        await chat.open()
        page = chat.page
        await chat.say("I have a question about my bill, and I'd like to understand every line of it please " * 3)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
        for selector in ("#text", "#send"):
            box = await page.locator(selector).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["y"] + box["height"] <= 640, (
                f"{selector} is off screen: {box}"
            )
        send = await page.locator("#send").bounding_box()
        assert send["height"] >= 40, "the Send button is big enough to tap"
        font = await page.locator("#text").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert font >= 16, "phones zoom into inputs with text under 16px"
        assert not chat.script_errors
    finally:
        await context.close()
