"""The outage agent's promise, "we'll text you when it's restored": recorded on the customer record when the customer
reports an outage that is active, and texted once when the outage-management system says it is over
(`POST /api/ops/outages/{id}/restored`), however often, and however concurrently, that is said."""

from __future__ import annotations

import concurrent.futures

from tests.sms.conftest import SmsStack, eventually, new_number

RESTORED = "power is back on"


def restored(sms: SmsStack, outage: str = "OUT-4471") -> dict:
    response = sms.client.post(sms.url(f"/api/ops/outages/{outage}/restored"))
    assert response.status_code == 200, response.text
    return response.json()


def test_the_restoration_text_goes_out_once_to_each_customer_promised_it(sms: SmsStack) -> None:
    by_text, by_whatsapp, opted_out, unaffected = new_number(), new_number(), new_number(), new_number()
    reply = sms.text(by_text, "my power is out at 45 Birch Rd, Springfield")
    assert "we'll text you when it's restored" in reply[0]
    promise = sms.customer(by_text).promise("outage_restored", "OUT-4471")  # type: ignore[union-attr]
    assert promise is not None and not promise.get("sent_at")

    answer = sms.client.post(f"{sms.acs_url}/_emulator/inbound",
                             json={"from": by_whatsapp, "text": "no electricity at 7 Cedar Ln, Springfield"})
    assert answer.status_code == 200
    eventually(lambda: (c := sms.customer(by_whatsapp)) is not None and c.promise("outage_restored", "OUT-4471"))
    assert sms.text(opted_out, "lights out at 12 Oak St, Springfield")
    assert sms.text(opted_out, "STOP") == []
    assert "don't see a reported outage" in sms.text(unaffected, "my power is out at 9 Elm Ave, Springfield")[0]

    first = restored(sms)
    assert first["sent"] >= 2 and first["not_sent"].get("opted out") == 1
    again = restored(sms)  # the outage system says it twice
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # and three times at once
        assert all(r["sent"] == 0 for r in pool.map(lambda _: restored(sms), range(3)))
    assert again["sent"] == 0 and again["already_sent"] >= 2

    for phone in (by_text, by_whatsapp):
        texts = [t for t in sms.texts(phone) if RESTORED in t]
        assert len(texts) == 1, sms.texts(phone)
        assert sms.customer(phone).promise("outage_restored", "OUT-4471")["sent_at"]  # type: ignore[union-attr]
    assert "45 Birch Rd" in next(t for t in sms.texts(by_text) if RESTORED in t)
    assert not any(RESTORED in t for t in sms.texts(opted_out) + sms.texts(unaffected))


def test_an_outage_the_data_does_not_list_is_404_and_a_body_is_refused(sms: SmsStack) -> None:
    missing = sms.client.post(sms.url("/api/ops/outages/OUT-0000/restored"))
    assert missing.status_code == 404 and "OUT-0000" in missing.json()["error"]
    body = sms.client.post(sms.url("/api/ops/outages/OUT-4471/restored"), json={"customers": ["everyone"]})
    assert body.status_code == 400
