"""The outage agent's promise, "we'll text you when it's restored", kept once on the customer's best channel when
the outage-management system says the outage is over (POST /api/ops/outages/{id}/restored), said twice and at once.

One restore serves every customer here (a host remembers an outage restored): one with a WhatsApp conversation who
reported it by SMS (inside the 24-hour window: one WhatsApp text, no SMS), one whose WhatsApp window has closed (the
text waits behind the template, and reaches them once when they answer), and one who only texts (one SMS).
"""

from __future__ import annotations

import concurrent.futures
from datetime import datetime, timedelta, timezone

from tests.notifications.conftest import RESTORED, Stack, eventually, new_number

OUTAGE = "OUT-4471"  # Oak St, Birch Rd, Cedar Ln


def test_the_restoration_goes_once_on_whatsapp_in_the_window_behind_the_template_outside_it_and_by_sms(
        stack: Stack) -> None:
    on_whatsapp, window_closed, sms_only = new_number(), new_number(), new_number()
    stack.whatsapp(on_whatsapp, "hello")  # a WhatsApp conversation, minutes old
    eventually(lambda: stack.whatsapp_texts(on_whatsapp))
    stack.text(on_whatsapp, "my power is out at 45 Birch Rd, Springfield")  # the promise is made by SMS
    day_ago = (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat()
    stack.whatsapp(window_closed, "no electricity at 7 Cedar Ln, Springfield", receivedTimestamp=day_ago)
    stack.text(sms_only, "lights out at 12 Oak St, Springfield")
    for phone in (on_whatsapp, window_closed, sms_only):
        eventually(lambda phone=phone: stack.promise(phone, "outage_restored"))
    assert any("we'll text you when it's restored" in t for t in stack.sms_outbox(on_whatsapp))
    assert not any(RESTORED in t for p in (on_whatsapp, window_closed, sms_only)  # nothing before its moment
                   for t in stack.sms_outbox(p) + stack.whatsapp_texts(p))

    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # the outage system says it three times at once
        answers = list(pool.map(lambda _: stack.restore(OUTAGE), range(3)))
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]

    eventually(lambda: any(RESTORED in t for t in stack.whatsapp_texts(on_whatsapp)))
    eventually(lambda: any(RESTORED in t for t in stack.sms_outbox(sms_only)))
    eventually(lambda: (stack.promise(window_closed, "outage_restored") or {}).get("sent_at"))
    assert stack.restore(OUTAGE).json()["already_sent"] >= 3  # and once more, later: nothing goes again

    kept = stack.promise(on_whatsapp, "outage_restored")
    assert kept and kept["kept_by"] == "whatsapp" and kept["sent_at"]
    assert [t for t in stack.whatsapp_texts(on_whatsapp) if RESTORED in t] == [
        "Springfield Power & Water: power is back on at 45 Birch Rd, Springfield. Thanks for your patience."]
    assert not any(RESTORED in t for t in stack.sms_outbox(on_whatsapp))  # WhatsApp, not SMS as well

    assert [t for t in stack.sms_outbox(sms_only) if RESTORED in t] == [
        "Springfield Power & Water: power is back on at 12 Oak St, Springfield. Thanks for your patience. "
        "Reply STOP to opt out."]
    assert stack.promise(sms_only, "outage_restored")["kept_by"] == "sms"  # type: ignore[index]

    # Outside the window no free text went: one template invites them back, and the text waits for their answer.
    assert stack.promise(window_closed, "outage_restored")["kept_by"] == "whatsapp_template"  # type: ignore[index]
    assert not any(RESTORED in t for t in stack.whatsapp_texts(window_closed))
    assert len([m for m in stack.whatsapp_outbox(window_closed) if m["kind"] == "template"]) == 1
    stack.whatsapp(window_closed, "ok, I'm here")
    eventually(lambda: any(RESTORED in t for t in stack.whatsapp_texts(window_closed)))
    assert len([t for t in stack.whatsapp_texts(window_closed) if RESTORED in t]) == 1
    assert not any(RESTORED in t for t in stack.sms_outbox(window_closed))


def test_bad_restores_and_unsigned_starts_are_refused(stack: Stack) -> None:
    assert stack.restore("OUT-0000").status_code == 404
    assert stack.client.post(f"{stack.host.url}/api/ops/outages/{OUTAGE}/restored",
                             json={"customers": ["everyone"]}).status_code == 400
    start = stack.client.post(f"{stack.host.url}/api/notifications/start")
    assert start.status_code == 401  # only the app's own start token starts anything
