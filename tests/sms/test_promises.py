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

    first = restored(sms)  # each promised customer's notification is told to go (functions/notifications.py)
    assert first["sent"] >= 3
    promises = lambda: [sms.customer(p).promise("outage_restored", "OUT-4471") for p in (by_text, by_whatsapp,  # noqa: E731
                                                                                       opted_out)]
    eventually(lambda: all(p.get("sent_at") or p.get("error") for p in promises()))  # type: ignore[union-attr]
    again = restored(sms)  # the outage system says it twice
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # and three times at once
        assert all(r["sent"] == 0 for r in pool.map(lambda _: restored(sms), range(3)))
    assert again["sent"] == 0 and again["already_sent"] >= 2 and again["not_sent"].get("opted out") == 1

    assert len([t for t in sms.texts(by_text) if RESTORED in t]) == 1, sms.texts(by_text)
    # The WhatsApp customer's goes on WhatsApp, their best channel (tests/notifications), not by SMS as well.
    assert not any(RESTORED in t for t in sms.texts(by_whatsapp))
    assert [p["kept_by"] for p in promises()[:2]] == ["sms", "whatsapp"]  # type: ignore[index]
    assert "45 Birch Rd" in next(t for t in sms.texts(by_text) if RESTORED in t)
    assert not any(RESTORED in t for t in sms.texts(opted_out) + sms.texts(unaffected))


def test_an_outage_the_data_does_not_list_is_404_and_a_body_is_refused(sms: SmsStack) -> None:
    missing = sms.client.post(sms.url("/api/ops/outages/OUT-0000/restored"))
    assert missing.status_code == 404 and "OUT-0000" in missing.json()["error"]
    body = sms.client.post(sms.url("/api/ops/outages/OUT-4471/restored"), json={"customers": ["everyone"]})
    assert body.status_code == 400


def test_once_the_outage_is_restored_the_agent_says_so_and_promises_nothing(sms: SmsStack) -> None:
    # The scenario's data.yaml still lists the outage as active with its old ETA; what the outage system said since
    # (`restored`, which the test before this one may already have said on this host) must win over it.
    restored(sms)
    phone = new_number()
    (reply,) = sms.text(phone, "my power is out at 45 Birch Rd, Springfield")
    assert "power has been restored" in reply and "45 Birch Rd" in reply
    assert "4:00 PM" not in reply and "we'll text you" not in reply  # no stale ETA, no text promised about it
    assert sms.customer(phone).promise("outage_restored", "OUT-4471") is None  # type: ignore[union-attr]
    assert restored(sms)["sent"] == 0  # and so nothing goes to them when it is said again
