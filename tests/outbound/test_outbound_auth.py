"""Issue 17's "POST /api/calls without a key: 401", shown on a real `python -m local` started with
LOCAL_FUNCTION_KEY, which then checks function keys as the Functions host in Azure does. Light on purpose: no call
is placed and no media gateway speech model loads (the voice journeys are in test_outbound_calls.py)."""

from __future__ import annotations

import httpx
import pytest

KEY = "local-test-key/with+base64=="  # an Azure key's alphabet: ?code= must carry it URL-encoded
BAD_BODY = {"purpose": {"agent": "BillingAgent", "opening": "Hello"}}  # no callee: the app's own 400


@pytest.fixture(scope="module")
def keyed_host(local_host_factory) -> str:
    return local_host_factory(LOCAL_FUNCTION_KEY=KEY).url


def _place(host: str, **request: object) -> httpx.Response:
    return httpx.post(f"{host}/api/calls", json=BAD_BODY, timeout=30, **request)


def test_placing_a_call_without_a_function_key_is_refused_with_401(keyed_host: str) -> None:
    response = _place(keyed_host)
    assert response.status_code == 401, response.text
    assert "function key" in response.json()["error"]


@pytest.mark.parametrize("request_kwargs", [
    {"headers": {"x-functions-key": "not-the-key"}},
    {"params": {"code": KEY.upper()}},
    {"headers": {"x-functions-key": KEY[:-1]}},
], ids=["wrong header", "wrong code", "the key but its last character"])
def test_a_wrong_function_key_is_refused_with_401(keyed_host: str, request_kwargs: dict) -> None:
    response = _place(keyed_host, **request_kwargs)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "the function key is not valid"


@pytest.mark.parametrize("request_kwargs", [{"headers": {"x-functions-key": KEY}}, {"params": {"code": KEY}}],
                         ids=["header", "code"])
def test_the_right_function_key_reaches_the_app_which_judges_the_body(keyed_host: str, request_kwargs: dict) -> None:
    response = _place(keyed_host, **request_kwargs)
    assert response.status_code == 400, response.text
    assert "exactly one of customer_id and phone" in response.json()["error"]


def test_the_customers_routes_stay_open_while_keys_are_checked(keyed_host: str) -> None:
    """Anonymous routes answer without a key: a customer opening web chat, anyone reading the API document."""
    for path in ("/api/webchat", "/api/openapi.json"):
        response = httpx.get(f"{keyed_host}{path}", timeout=30)
        assert response.status_code == 200, (path, response.text)
