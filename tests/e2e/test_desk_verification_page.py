"""The desk page in headless Chromium shows a person whether the customer proved who they are and what they were
told: each conversation's verification level, and the audit of identity checks and account data shown. It never
shows a code: there is none on the record.

A host of this module's own (the same fixtures as test_desk_page.py), a web chat customer who verifies with the code
their phone was sent, and Dana at the desk.
"""

from __future__ import annotations

import asyncio

from tests.e2e.test_chat_page import Chat, browser  # noqa: F401 - browser is a fixture
from tests.e2e.test_desk_page import (  # noqa: F401 - contexts, desk_local and desk_host are fixtures
    ACCOUNT, ACCOUNT_NAME, VERIFY, Desk, contexts, desk_host, desk_local, escalate,
)
from tests.verifying import codes_sent

JORDAN = "+15555550100"  # the phone number on record for ACCOUNT


async def test_the_desk_shows_the_level_and_what_was_shown_and_never_the_code(contexts, desk_host, desk_local):
    dana: Desk = await contexts("desk", desk_host)
    await dana.sign_in("Dana")
    await dana.set_available()

    customer: Chat = await contexts("chat", desk_host)
    await escalate(customer, f"what's my balance? my account number is {ACCOUNT}", VERIFY)
    await dana.entry(ACCOUNT_NAME).wait_for()
    await dana.claim(ACCOUNT_NAME)
    page = dana.page

    session = page.locator("#transcripts .session")
    assert await session.get_attribute("data-verification") == "verified"
    assert "· verified" in await session.locator("h4").inner_text()

    audit = page.locator("#audit li")
    await audit.first.wait_for()
    events = [await item.get_attribute("data-event") for item in await audit.all()]
    assert events == ["disclosed", "verification_verified", "verification_requested"], "newest first"
    lines = await audit.all_inner_texts()
    assert "Shown get balance" in lines[0] and "number ending 0100 by code" in lines[0], lines[0]
    assert lines[0].endswith("· verified"), lines[0]
    assert "Verified (code)" in lines[1] and "Web chat" in lines[1], lines[1]
    assert "Asked to verify for get balance (code)" in lines[2] and "someone unknown" in lines[2], lines[2]
    assert lines[2].endswith("· not verified"), lines[2]

    codes = await asyncio.to_thread(codes_sent, desk_local.acs_url, JORDAN)
    shown = await page.locator("body").inner_text()
    assert codes and not any(code in shown for code in codes), "a person at the desk never sees a code"
