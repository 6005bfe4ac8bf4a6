"""The outage agent's promise made on web chat ("we'll text you when it's restored", to a visitor who reports the
outage and then gives the number to reach them on) is a notification on their record, and goes once on their best
channel when the outage-management system says the outage is over, said twice at once: by SMS to a number with no
WhatsApp conversation, on WhatsApp (and not by SMS) to a number that has one.
"""

from __future__ import annotations

import concurrent.futures
import time

from tests.notifications.conftest import RESTORED, Stack, eventually, new_number

OUTAGE = "OUT-4502"  # Lakeview Dr, Shelbyville


def chat(stack: Stack) -> dict[str, str]:
    opened = stack.client.post(f"{stack.host.url}/api/webchat/sessions")
    assert opened.status_code == 201, opened.text
    return opened.json()


def say(stack: Stack, session: dict[str, str], text: str) -> str:
    answer = stack.client.post(f"{stack.host.url}/api/webchat/sessions/{session['session_id']}/messages",
                               json={"text": text}, headers={"Authorization": f"Bearer {session['token']}"})
    assert answer.status_code == 200, answer.text
    return " ".join(reply["text"] for reply in answer.json()["replies"])


def promised_on_web_chat(stack: Stack, address: str, phone: str) -> dict[str, str]:
    """A visitor reports the outage at `address` and gives `phone`; the promise is on their record, unsent."""
    session = chat(stack)
    said = say(stack, session, f"my power is out at {address}")
    assert "we'll text you when it's restored" in said, said
    say(stack, session, f"you can reach me on {phone}")
    record = stack.webchat_customer(session["session_id"])
    assert record.collected.get("contact_number") == phone, record.collected
    [promise] = record.promises
    assert promise["kind"] == "outage_restored" and promise["ref"] == OUTAGE, promise
    assert promise["channel"] == "webchat" and not promise.get("sent_at"), promise
    return session


def kept(stack: Stack, session: dict[str, str]) -> dict:
    return stack.webchat_customer(session["session_id"]).promises[-1]


def test_a_promise_made_on_web_chat_goes_once_by_sms_or_on_whatsapp(stack: Stack) -> None:
    texts_only, has_whatsapp = new_number(), new_number()
    stack.whatsapp(has_whatsapp, "hello")  # a WhatsApp conversation with this number, minutes old
    eventually(lambda: stack.whatsapp_texts(has_whatsapp))
    by_sms = promised_on_web_chat(stack, "3 Lakeview Dr, Shelbyville", texts_only)
    by_whatsapp = promised_on_web_chat(stack, "9 Lakeview Dr, Shelbyville", has_whatsapp)
    assert not any(RESTORED in t for p in (texts_only, has_whatsapp)  # nothing before its moment
                   for t in stack.sms_outbox(p) + stack.whatsapp_texts(p))

    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # the outage system says it twice at once
        answers = list(pool.map(lambda _: stack.restore(OUTAGE), range(2)))
    assert [a.status_code for a in answers] == [200] * 2, [a.text for a in answers]

    eventually(lambda: kept(stack, by_sms).get("sent_at") and kept(stack, by_whatsapp).get("sent_at"))
    assert stack.restore(OUTAGE).json()["already_sent"] == 2  # and once more, later: nothing goes again
    time.sleep(2)  # a second text would be in the outbox by now

    assert [t for t in stack.sms_outbox(texts_only) if RESTORED in t] == [
        "Springfield Power & Water: power is back on at 3 Lakeview Dr, Shelbyville. Thanks for your patience. "
        "Reply STOP to opt out."]
    assert kept(stack, by_sms)["kept_by"] == "sms"

    assert [t for t in stack.whatsapp_texts(has_whatsapp) if RESTORED in t] == [
        "Springfield Power & Water: power is back on at 9 Lakeview Dr, Shelbyville. Thanks for your patience."]
    assert not any(RESTORED in t for t in stack.sms_outbox(has_whatsapp))
    assert kept(stack, by_whatsapp)["kept_by"] == "whatsapp"
