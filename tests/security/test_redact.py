"""shared/redact.py: what call sites use to mask what they log, and the record-factory safety net behind them."""

from __future__ import annotations

import logging

import pytest

from shared import redact
from shared.tokens import TokenSigner

TOKEN = TokenSigner(b"k" * 32).issue("media", 600, sid="voice_1", cid="cus_1", call="c1")
JWT = ".".join(("eyJhbGciOiJSUzI1NiJ9", "eyJhdWQiOiJ4In0", "c2lnbmF0dXJl"))  # joined here: no token in the repo


@pytest.mark.parametrize(
    ("number", "masked"),
    [("+15555550100", "+1555***0100"), ("+447700900123", "+4477***0123"), ("+1234", "***34"),
     (None, "a withheld number")],
)
def test_phone_numbers_keep_only_enough_to_tell_callers_apart(number: str | None, masked: str) -> None:
    assert redact.phone(number) == masked


def test_credential_query_values_are_masked_in_urls() -> None:
    url = f"https://app.example/api/calls/callbacks?token={TOKEN}&x=1"
    assert redact.url(url) == "https://app.example/api/calls/callbacks?token=***&x=1"
    assert redact.url("/runtime/webhooks/EventGrid?functionName=f&code=abc") == (
        "/runtime/webhooks/EventGrid?functionName=f&code=***")
    assert redact.url("/api/webchat?handoff=abc.def") == "/api/webchat?handoff=***"


def test_text_masks_tokens_keys_and_numbers_but_leaves_ids_alone() -> None:
    line = (f"call c1 from +15555550100 token {TOKEN} Authorization: Bearer abc.def "
            f"AccountKey=Zm9vYmFyZm9vYmFy== jwt {JWT}")
    cleaned = redact.text(line)
    assert "+15555550100" not in cleaned and "+1555***0100" in cleaned
    assert TOKEN not in cleaned and TOKEN.split(".")[1] not in cleaned
    assert "Bearer ***" in cleaned and "abc.def" not in cleaned and "AccountKey=***" in cleaned
    assert "eyJhbGci" not in cleaned
    ids = "session voice_26f40a0f-4a2d-46bb-b964-453c6109f6d9 customer cus_97d73d97c6664ddabf49524c6fec2e1b at 12:30"
    assert redact.text(ids) == ids


def test_the_safety_net_rewrites_records_a_call_site_forgot_to_mask(caplog: pytest.LogCaptureFixture) -> None:
    redact.install()
    redact.install()  # idempotent: one wrapper, not two
    with caplog.at_level(logging.INFO, logger="tests.security"):
        logging.getLogger("tests.security").info("callback %s from %s", f"/cb?token={TOKEN}", "+15555550100")
        try:
            raise ConnectionError(f"cannot reach https://app.example/api/calls/callbacks?token={TOKEN}")
        except ConnectionError:
            logging.getLogger("tests.security").exception("posting a callback failed")
    first, second = caplog.records
    assert first.getMessage() == "callback /cb?token=*** from +1555***0100"
    assert "callbacks?token=***" in caplog.text and TOKEN not in caplog.text and "ConnectionError" in caplog.text
