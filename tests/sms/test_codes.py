"""Codes by text message: a web chat visitor who asks for account data gets the code on the phone on record (read
here from the emulator's SMS outbox, as the customer reads it on their phone), and the answer right after it."""

from __future__ import annotations

from tests.sms.conftest import SmsStack, code_in

SAM = "+15555550111"  # a demo account holder: balance $42.10


def chat(sms: SmsStack, session: dict, text: str) -> str:
    response = sms.client.post(sms.url(f"/api/webchat/sessions/{session['session_id']}/messages"), json={"text": text},
                               headers={"Authorization": f"Bearer {session['token']}"})
    assert response.status_code == 200, response.text
    return " ".join(r["text"] for r in response.json()["replies"])


def test_a_web_chat_visitor_gets_the_code_by_text_and_then_the_balance(sms: SmsStack) -> None:
    created = sms.client.post(sms.url("/api/webchat/sessions"), json={})
    assert created.status_code == 201, created.text
    session = created.json()
    before = len(sms.outbox(SAM))

    asked = chat(sms, session, "what's my balance? my phone number is 555 555 0111")
    assert "text message" in asked and "$42.10" not in asked
    codes = [code_in(t["message"]) for t in sms.outbox(SAM)[before:]]
    assert len(codes) == 1 and codes[0] is not None  # to the number on record, once

    answered = chat(sms, session, codes[0])
    assert "$42.10" in answered  # the question they asked, answered without asking again


def test_a_number_that_texted_stop_gets_its_code_by_whatsapp_instead(sms: SmsStack) -> None:
    phone = "+15555550122"
    assert sms.text(phone, "stop") == []
    created = sms.client.post(sms.url("/api/webchat/sessions"), json={}).json()
    texts_before = len(sms.outbox(phone))
    asked = chat(sms, created, "how much do I owe? the phone on the account is 555 555 0122")
    assert "WhatsApp" in asked
    assert len(sms.outbox(phone)) == texts_before  # nothing texted to a number that said STOP
    whatsapp = sms.client.get(f"{sms.acs_url}/_emulator/messages", params={"to": phone}).json()
    assert any(m.get("template") == "switchboard_verification_code" for m in whatsapp)
    assert sms.text(phone, "start") == []  # back in, for the tests that follow
