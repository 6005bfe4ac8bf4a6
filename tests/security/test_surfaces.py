"""Each public endpoint and event handler refuses what docs/security.md says it refuses: one test per row there.

Most run against one real `python -m local` (tests/security/conftest.py) whose token secret we know, so forged,
expired, foreign and wrong-audience tokens are made with the real signer; the Azure-only rows read infra/.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import stat
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import azure.functions as func
import httpx
import pytest
from aiohttp import web

from functions.http import client_address
from local.acs.oidc import CallbackSigner
from shared.conversation import Conversation
from shared.models import Channel, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.settings import SETTINGS
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from shared.tokens import TokenSigner, load_secret
from tests.handoff_links import sent_link
from tests.security.conftest import TOKEN_SECRET, SecureStack, registered_functions
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
FORGED = TokenSigner(b"not-the-host-secret-but-long-enough-to-sign").issue  # right shape, wrong key


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _tampered(token: str) -> str:
    signed, _, signature = token.rpartition(".")
    return f"{signed}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


def _new_phone() -> str:
    return f"+1222{uuid.uuid4().int % 10**7:07d}"


# Web chat ---------------------------------------------------------------------------------------------------------


def test_webchat_sessions_start_anonymously_with_a_token_bound_to_the_session(secure: SecureStack) -> None:
    created = secure.client.post(secure.url("/api/webchat/sessions"))
    assert created.status_code == 201, created.text
    body = created.json()
    claims = secure.signer.verify(body["token"], "webchat")
    assert claims["sid"] == body["session_id"] and claims["cid"]
    assert claims["exp"] - claims["iat"] == 86400  # WEBCHAT_TOKEN_TTL_SECONDS
    assert created.headers["Cache-Control"] == "no-store"


async def test_new_webchat_sessions_are_limited_per_client_address(local_host_factory, tmp_path: Path) -> None:
    limit = int(SETTINGS["WEBCHAT_SESSIONS_PER_ADDRESS"][0])  # the default: 30 a minute, more than a person starts
    window = 8  # seconds: longer than the burst takes on a slow machine, short enough to see it end
    data_dir = tmp_path / "data"
    host = await asyncio.to_thread(local_host_factory, SWITCHBOARD_DATA_DIR=str(data_dir),
                                   WEBCHAT_SESSIONS_PER_ADDRESS=str(limit),
                                   WEBCHAT_SESSIONS_WINDOW_SECONDS=str(window))
    await asyncio.to_thread(httpx.get, f"{host.url}/api/ops/queue")  # the demo customers are seeded on first use
    customers_before = _customers(data_dir)

    def client(source: str) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(local_address=source)  # a second loopback address is another client
        return httpx.AsyncClient(base_url=host.url, timeout=60, transport=transport)

    async with client("127.0.0.1") as loop_, client("127.0.0.2") as neighbour:
        # A loop of creations, all at once, from one address: the first `limit` are served, the rest refused.
        started = time.monotonic()
        answers = await asyncio.gather(*(loop_.post("/api/webchat/sessions") for _ in range(limit + 10)))
        assert sorted(a.status_code for a in answers) == [201] * limit + [429] * 10
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.headers["Retry-After"] == str(window) and "too many" in refused.json()["error"]
        assert _customers(data_dir) == customers_before + limit, "a refused creation makes no customer"
        # Writing another first hop in X-Forwarded-For changes nothing: the address is the hop the front end adds.
        forged = await loop_.post("/api/webchat/sessions", headers={"X-Forwarded-For": "198.51.100.7"})
        assert forged.status_code == 429, forged.text
        # Another address is served meanwhile.
        assert (await neighbour.post("/api/webchat/sessions")).status_code == 201
        # And the loop's address is served again once its window has passed.
        await asyncio.sleep(max(0.0, started + window + 0.5 - time.monotonic()))
        assert (await loop_.post("/api/webchat/sessions")).status_code == 201


def test_the_client_address_is_the_hop_the_front_end_adds() -> None:
    def address(forwarded: str | None) -> str:
        headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
        return client_address(func.HttpRequest("POST", "http://host/api/webchat/sessions", headers=headers, body=b""))

    assert address("203.0.113.5:52341") == "203.0.113.5"  # the front end writes ip:port
    assert address("198.51.100.7, 203.0.113.5:52341") == "203.0.113.5"  # a first hop the client wrote is not it
    assert address("[2001:db8:1:2::9]:443") == address("2001:db8:1:2:ffff::1") == "2001:db8:1:2::-64"  # one /64
    assert address("::ffff:203.0.113.5") == "203.0.113.5"  # IPv4 on a dual-stack socket is that IPv4 address
    assert address(None) == address("not an address") == "unknown"  # nothing to go on: one shared count


def _customers(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "customers.sqlite3") as db:
        return db.execute("SELECT COUNT(*) FROM customers").fetchone()[0]


def test_webchat_session_routes_need_that_sessions_signed_unexpired_token(secure: SecureStack) -> None:
    mine, theirs = (secure.client.post(secure.url("/api/webchat/sessions")).json() for _ in range(2))
    sid, cid = mine["session_id"], secure.signer.verify(mine["token"], "webchat")["cid"]
    refused = {
        None: 401,  # no token
        "not-a-token": 401,
        _tampered(mine["token"]): 401,  # forged signature
        FORGED("webchat", 600, sid=sid, cid=cid): 401,  # signed with another key
        secure.expired("webchat", sid=sid, cid=cid): 401,
        secure.token("handoff", sid=sid, cid=cid): 401,  # a token for something else
        secure.token("media", sid=sid, cid=cid): 401,
        theirs["token"]: 403,  # another session's
    }
    for token, status in refused.items():
        headers = _auth(token) if token else {}
        read = secure.client.get(secure.url(f"/api/webchat/sessions/{sid}"), headers=headers)
        write = secure.client.post(secure.url(f"/api/webchat/sessions/{sid}/messages"), json={"text": "hi"},
                                   headers=headers)
        assert (read.status_code, write.status_code) == (status, status), (token, read.text, write.text)
        assert "error" in write.json() and "Traceback" not in write.text
    transcript = secure.client.get(secure.url(f"/api/webchat/sessions/{sid}"), headers=_auth(mine["token"])).json()
    assert [t["role"] for t in transcript["turns"]] == ["agent"], "no refused message reached the session"


def test_the_chat_page_is_public_with_a_strict_content_security_policy(secure: SecureStack) -> None:
    page = secure.client.get(secure.url("/api/webchat"))
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["Referrer-Policy"] == "no-referrer"


# Handoffs ---------------------------------------------------------------------------------------------------------


async def test_handoff_links_are_signed_expiring_and_single_use(secure: SecureStack) -> None:
    store = SqliteCustomerStore(secure.data_dir / "customers.sqlite3")
    try:
        conversation = Conversation(load_scenario("utilities"), store, InProcessSessionState(), OfflinePolicy())
        session_id = new_id("voice")
        opened = await conversation.open_for_identity(
            Channel.VOICE, session_id, Identity(IdentityKind.PHONE, _new_phone())
        )
        customer_id = opened.customer.customer_id
    finally:
        await store.close()
    control = secure.token("call-control", sid=session_id, cid=customer_id, call=session_id)
    started = secure.client.post(secure.url("/api/handoffs"), headers=_auth(control),
                                 json={"customer_id": customer_id, "session_id": session_id, "to_channel": "webchat"})
    assert started.status_code == 202, started.text
    instance_id = started.json()["id"]
    link = eventually(lambda: sent_link(secure.client.get(f"{secure.host.acs_url}/_emulator/messages").json(),
                                        instance_id), timeout=30)
    status = secure.client.get(secure.url(f"/api/handoffs/{instance_id}")).json()  # an operator's view: no link
    assert status["invite"]["link_sent"] is True and "handoff=" not in json.dumps(status)
    token = link.split("handoff=", 1)[1]
    claims = secure.signer.verify(token, "handoff")
    assert claims["cid"] == customer_id and claims["jti"]

    def redeem(handoff_token: str) -> httpx.Response:
        return secure.client.post(secure.url("/api/webchat/sessions"), json={"handoff_token": handoff_token})

    same_claims = {k: claims[k] for k in ("cid", "hid", "jti")}
    for bad in (_tampered(token), FORGED("handoff", 600, **same_claims), secure.expired("handoff", **same_claims),
                secure.token("webchat", sid="web_x", **same_claims)):
        assert redeem(bad).status_code == 401
    first = redeem(token)
    assert first.status_code == 201, first.text
    again = redeem(token)
    assert again.status_code == 401 and "link" in again.json()["error"]  # used, and its handoff is over


def test_starting_a_handoff_needs_the_calls_control_token(secure: SecureStack) -> None:
    body = {"customer_id": "cust_x", "session_id": "voice_x", "to_channel": "whatsapp"}
    refused = {
        None: 401,
        _tampered(secure.token("call-control", sid="voice_x", cid="cust_x")): 401,
        secure.expired("call-control", sid="voice_x", cid="cust_x"): 401,
        secure.token("media", sid="voice_x", cid="cust_x"): 401,  # the call's socket token: for the socket only
        secure.token("webchat", sid="voice_x", cid="cust_x"): 401,
        secure.token("acs-callback", sid="voice_x", cid="cust_x"): 401,
        secure.token("call-control", sid="voice_other", cid="cust_x"): 403,  # another call's session
    }
    for token, status in refused.items():
        response = secure.client.post(secure.url("/api/handoffs"), json=body, headers=_auth(token) if token else {})
        assert response.status_code == status, (token, response.text)


def test_operator_routes_take_a_function_key_in_azure_and_are_loopback_only_locally(secure: SecureStack) -> None:
    levels = {f.get_function_name(): f.get_trigger().auth_level.name for f in registered_functions()
              if f.get_trigger().type == "httpTrigger"}
    operators = ("ops_queue_get", "ops_queue_set", "ops_outage_restored", "handoffs_status")
    assert {name: levels[name] for name in operators} == dict.fromkeys(operators, "FUNCTION")
    # The local host serves them without a key, as Core Tools does, and only on 127.0.0.1.
    assert secure.host.url.startswith("http://127.0.0.1:")
    assert secure.client.get(secure.url("/api/ops/queue")).status_code == 200
    assert secure.client.get(secure.url("/api/handoffs/handoff-nobody")).status_code == 404


# Event Grid -------------------------------------------------------------------------------------------------------


def test_local_event_grid_webhook_does_the_handshake_and_listens_on_loopback(secure: SecureStack) -> None:
    hook = secure.url("/runtime/webhooks/EventGrid")
    validation = [{"id": "v1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "subject": "",
                   "eventTime": "2026-01-01T00:00:00Z", "data": {"validationCode": "code-123"}, "dataVersion": "1"}]
    for name in ("whatsapp_events", "sms_events", "incoming_call"):
        handshake = secure.client.post(hook, params={"functionName": name}, json=validation,
                                       headers={"aeg-event-type": "SubscriptionValidation"})
        assert handshake.status_code == 200 and handshake.json() == {"validationResponse": "code-123"}
        no_kind = secure.client.post(hook, params={"functionName": name}, json=validation)
        assert no_kind.status_code == 400, "a POST without Event Grid's aeg-event-type header is refused"
    assert secure.client.post(hook, params={"functionName": "nope"}, json=[]).status_code == 404
    # Event triggers are reachable through the webhook only, never as HTTP routes.
    assert secure.client.post(secure.url("/api/incoming_call"), json=validation).status_code == 404
    assert secure.host.url.startswith("http://127.0.0.1:")


def test_azure_event_grid_subscriptions_carry_the_eventgrid_extension_system_key() -> None:
    events = (ROOT / "infra/modules/events.bicep").read_text()
    assert re.search(r"var systemKey = functionHost\.listKeys\(\)\.systemKeys\.eventgrid_extension", events)
    assert "'https://${functionApp.properties.defaultHostName}/runtime/webhooks/EventGrid'" in events
    endpoints = re.findall(r"endpointUrl: '([^']+)'", events)
    assert len(endpoints) == 3  # incoming_call, whatsapp_events, sms_events
    for endpoint in endpoints:
        assert endpoint.startswith("${webhookBase}?functionName=") and endpoint.endswith("&code=${systemKey}")


def test_event_handlers_drop_events_they_were_not_subscribed_to(secure: SecureStack) -> None:
    hook = secure.url("/runtime/webhooks/EventGrid")
    phone = _new_phone()
    message = {"id": f"evt-{uuid.uuid4()}", "eventType": "Microsoft.Communication.AdvancedMessageReceived",
               "subject": f"advancedMessage/sender/{phone}", "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1.0",
               "data": {"from": phone, "to": "x", "messageId": str(uuid.uuid4()), "messageType": "text",
                        "content": "hello", "receivedTimestamp": "2026-01-01T00:00:00Z"}}
    notification = {"aeg-event-type": "Notification"}
    wrong_type = secure.client.post(hook, params={"functionName": "incoming_call"}, json=[message],
                                    headers=notification)
    assert wrong_type.status_code == 202  # dropped (and logged), not retried forever
    unknown = {**message, "id": f"evt-{uuid.uuid4()}", "eventType": "Microsoft.Communication.SomethingElse"}
    dropped = secure.client.post(hook, params={"functionName": "whatsapp_events"}, json=[unknown], headers=notification)
    assert dropped.status_code == 202
    assert secure.client.get(secure.acs("/_emulator/messages"), params={"to": phone}).json() == []
    to_sms = secure.client.post(hook, params={"functionName": "sms_events"}, json=[message], headers=notification)
    assert to_sms.status_code == 202  # a WhatsApp message is not a text: dropped by the SMS trigger
    assert secure.client.get(secure.acs("/_emulator/sms"), params={"to": phone}).json() == []
    logs = secure.logs()
    assert "filter the subscription on IncomingCall" in logs and "unsupported event type" in logs


def test_durable_management_urls_never_reach_callers(secure: SecureStack) -> None:
    # The Durable extension's webhooks take its system key; an app that returned check-status payloads would hand
    # that key to whoever started a handoff. None of the functions builds one.
    for source in (ROOT / "functions").glob("*.py"):
        text = source.read_text()
        for call in ("create_check_status_response", "create_http_management_payload", "get_client_response_links"):
            assert call not in text, f"{source.name} returns Durable management URLs ({call})"
    status = secure.client.get(secure.url("/api/handoffs/handoff-nobody"))
    assert status.status_code == 404 and "runtime/webhooks" not in status.text and "code=" not in status.text


# Calls ------------------------------------------------------------------------------------------------------------


def _callback(secure: SecureStack, token: str | None, authorization: str | None = None) -> httpx.Response:
    params = {"token": token} if token is not None else {}
    headers = {"Authorization": authorization} if authorization else {}
    return secure.client.post(secure.url("/api/calls/callbacks"), params=params, json=[], headers=headers)


def test_call_callbacks_need_the_calls_signed_url_token(secure: SecureStack) -> None:
    claims = {"sid": "voice_x", "cid": "cust_x", "call": "call-x"}
    for token in (None, "", _tampered(secure.token("acs-callback", **claims)), FORGED("acs-callback", 600, **claims),
                  secure.expired("acs-callback", **claims), secure.token("media", **claims)):
        response = _callback(secure, token)
        assert response.status_code == 401, (token, response.text)


def test_call_callbacks_need_acs_signed_jwt_when_the_resource_id_is_set(secure: SecureStack) -> None:
    url_token = secure.token("acs-callback", sid="voice_x", cid="cust_x", call="call-x")
    not_acs = CallbackSigner("6b2d6f2e-0000-4000-8000-00000000ac50")  # right audience, a key ACS never published
    for authorization in (None, "Bearer not.a.jwt", not_acs.authorization()):
        response = _callback(secure, url_token, authorization)
        assert response.status_code == 401, response.text
    # A real call through the emulator, whose callbacks carry its signed JWT, is followed: every callback is taken.
    placed = secure.client.post(secure.acs("/_emulator/calls"), json={"from": _new_phone()})
    assert placed.status_code in (200, 201), placed.text
    call_id = placed.json()["id"]

    def connected() -> list[dict]:
        seen = secure.client.get(secure.acs(f"/_emulator/calls/{call_id}")).json()["callbacks"]
        return seen if any(c["type"] == "CallConnected" for c in seen) else []

    callbacks = eventually(connected, timeout=30)
    assert {c["status"] for c in callbacks} == {204}
    secure.client.post(secure.acs(f"/_emulator/calls/{call_id}/hangup"))
    # Azure deployments always check it: the templates set the resource id.
    assert "ACS_RESOURCE_IMMUTABLE_ID: acs.outputs.immutableResourceId" in (ROOT / "infra/main.bicep").read_text()


def test_call_control_routes_need_that_calls_control_token(secure: SecureStack) -> None:
    claims = {"sid": "voice_x", "cid": "cust_x"}
    refused = {
        None: 401,
        _tampered(secure.token("call-control", call="call-x", **claims)): 401,
        secure.expired("call-control", call="call-x", **claims): 401,
        secure.token("media", call="call-x", **claims): 401,  # the call's socket token: for the socket only
        secure.token("acs-callback", call="call-x", **claims): 401,
        secure.token("webchat", call="call-x", **claims): 401,
        secure.token("call-control", call="call-other", **claims): 403,  # another call's
    }
    for method, path in (("GET", ""), ("POST", "/hangup"), ("POST", "/transfer")):
        for token, status in refused.items():
            response = secure.client.request(method, secure.url(f"/api/calls/call-x{path}"),
                                             headers=_auth(token) if token else {})
            assert response.status_code == status, (method, path, token, response.text)
        allowed = secure.client.request(method, secure.url(f"/api/calls/call-x{path}"),
                                        headers=_auth(secure.token("call-control", call="call-x", **claims)))
        assert allowed.status_code == 404, "past authentication: there is no such call"


# Media gateway ----------------------------------------------------------------------------------------------------


def test_the_gateway_media_socket_needs_a_media_token(secure: SecureStack) -> None:
    claims = {"sid": "voice_nobody", "cid": "cust_nobody", "call": "call-nobody"}
    refused = {
        None: 401,
        _tampered(secure.token("media", **claims)): 403,
        FORGED("media", 600, **claims): 403,
        secure.expired("media", **claims): 403,
        secure.token("acs-callback", **claims): 403,
        secure.token("webchat", **claims): 403,
        secure.token("call-control", **claims): 403,  # the call's control token opens no socket
        secure.token("media", **claims): 404,  # genuine, but for a session that does not exist
    }
    for token, status in refused.items():
        response = secure.client.get(f"{secure.gateway_url}/media", params={"token": token} if token else {})
        assert response.status_code == status, (token, response.text)


async def test_a_calls_media_token_opens_its_one_socket_within_minutes_and_nothing_else(secure: SecureStack) -> None:
    placed = secure.client.post(secure.acs("/_emulator/calls"), json={"from": _new_phone()})
    assert placed.status_code in (200, 201), placed.text
    call_id = placed.json()["id"]

    def streaming() -> dict | None:
        view = secure.client.get(secure.acs(f"/_emulator/calls/{call_id}")).json()
        return view if view["media"] == "streaming" else None

    call = eventually(streaming, timeout=30)  # the real gateway took the call's socket
    media_url = call["answer"]["mediaStreamingOptions"]["transportUrl"]
    media = parse_qs(urlsplit(media_url).query)["token"][0]
    claims = secure.signer.verify(media, "media")
    assert claims["exp"] - claims["iat"] == 300  # CALL_MEDIA_TOKEN_TTL_SECONDS: ACS connects as the call connects
    callback = parse_qs(urlsplit(call["answer"]["callbackUri"]).query)["token"][0]
    callback_claims = secure.signer.verify(callback, "acs-callback")
    assert callback_claims["exp"] - callback_claims["iat"] == 7200  # CALL_TOKEN_TTL_SECONDS: the longest call
    assert "call-control" not in (media_url + callback)  # the control token travels in no URL

    # The media token is for the socket only: not the call's control routes, not a handoff of its session.
    assert secure.client.get(secure.url(f"/api/calls/{call_id}"), headers=_auth(media)).status_code == 401
    handoff = {"customer_id": claims["cid"], "session_id": claims["sid"], "to_channel": "whatsapp"}
    assert secure.client.post(secure.url("/api/handoffs"), json=handoff, headers=_auth(media)).status_code == 401

    # And the socket is taken once: the URL replayed while ACS streams on it opens nothing.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(media_url)
    assert refused.value.status == 409
    control = secure.token("call-control", **{k: claims[k] for k in ("call", "sid", "cid")})  # what the gateway holds
    view = secure.client.get(secure.url(f"/api/calls/{call_id}"), headers=_auth(control))
    assert view.status_code == 200 and view.json()["media"] == "streaming", view.text  # the first socket carries on
    assert secure.client.get(secure.acs(f"/_emulator/calls/{call_id}")).json()["media"] == "streaming"
    secure.client.post(secure.acs(f"/_emulator/calls/{call_id}/hangup"))


def test_the_gateway_healthz_is_open_and_holds_no_customer_data(secure: SecureStack) -> None:
    health = secure.client.get(f"{secure.gateway_url}/healthz")
    assert health.status_code == 200
    assert set(health.json()) == {"status", "calls", "engines"}
    assert set(health.json()["engines"]) <= {"kind", "stt", "tts", "vad", "turn", "warm"}


async def test_the_gateway_stats_are_loopback_only_or_need_the_stats_key(secure: SecureStack, tmp_path) -> None:
    # No key (the default, and `make run`): a direct loopback request only; anything through a proxy is refused.
    assert secure.client.get(f"{secure.gateway_url}/stats").status_code == 200
    forwarded = secure.client.get(f"{secure.gateway_url}/stats", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403
    # With GATEWAY_STATS_KEY: the key as a bearer token, from anywhere.
    from media_gateway.engines import build_engines
    from media_gateway.server import Gateway, create_app
    from shared.bootstrap import build_services
    from shared.settings import Settings

    key = uuid.uuid4().hex
    settings = Settings.from_env({"SWITCHBOARD_DATA_DIR": str(tmp_path), "SWITCHBOARD_POLICY": "offline",
                                  "SWITCHBOARD_TOKEN_SECRET": TOKEN_SECRET, "GATEWAY_STATS_KEY": key})
    services = await build_services(settings)
    runner = web.AppRunner(create_app(Gateway(services, build_engines(settings, "null"))))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/stats")).status_code == 401
            assert (await client.get(f"{base}/stats", headers=_auth("wrong"))).status_code == 401
            allowed = await client.get(f"{base}/stats", headers={**_auth(key), "X-Forwarded-For": "203.0.113.9"})
            assert allowed.status_code == 200 and "audio_seconds" in allowed.json()
            assert (await client.get(f"{base}/healthz")).status_code == 200  # probes need no key
    finally:
        await runner.cleanup()
        await services.close()


# API description --------------------------------------------------------------------------------------------------


def test_the_api_description_is_public_and_holds_no_credentials(secure: SecureStack) -> None:
    document = secure.client.get(secure.url("/api/openapi.json"))
    assert document.status_code == 200
    text = document.text
    assert TOKEN_SECRET not in text and "AccountKey=" not in text
    assert not re.search(r"code=[\w-]{10,}", text), "no function key in the examples"
    assert not re.search(r"[\w-]{20,}\.[\w-]{43}", text), "no signed token in the examples"
    json.loads(text)


# ACS emulator (local only) ----------------------------------------------------------------------------------------


def test_the_acs_emulator_checks_request_signatures_and_listens_on_loopback(secure: SecureStack) -> None:
    assert secure.host.acs_url and secure.host.acs_url.startswith("http://127.0.0.1:")
    unsigned = secure.client.post(secure.acs("/messages/notifications:send"), params={"api-version": "2024-08-30"},
                                  json={"channelRegistrationId": "x", "to": ["+15555550100"], "kind": "text",
                                        "content": "hi"})
    assert unsigned.status_code == 401
    wrong = secure.client.post(secure.acs("/calling/callConnections:answer"), content=b"{}",
                               headers={"Authorization": "HMAC-SHA256 SignedHeaders=x&Signature=abc",
                                        "x-ms-date": "Wed, 25 Nov 2026 00:00:00 GMT", "x-ms-content-sha256": "x"})
    assert wrong.status_code == 401


# Secrets ----------------------------------------------------------------------------------------------------------


def test_the_token_secret_is_required_in_azure_and_private_locally(tmp_path: Path, monkeypatch) -> None:
    for marker in ("WEBSITE_INSTANCE_ID", "CONTAINER_APP_NAME"):  # the Functions host, Container Apps
        monkeypatch.setenv(marker, "x")
        with pytest.raises(RuntimeError, match="SWITCHBOARD_TOKEN_SECRET must be set"):
            load_secret("", tmp_path / "azure")
        monkeypatch.delenv(marker)
    assert not (tmp_path / "azure" / "token-secret").exists()
    secret = load_secret("", tmp_path / "local")
    path = tmp_path / "local" / "token-secret"
    assert len(secret) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret("", tmp_path / "local") == secret, "restarts keep sessions"
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenSigner(b"too short")


def _bicep_object(text: str, name: str) -> str:
    start = text.index(f"var {name} = ")
    return text[start: text.index("\n}", start)]


def test_the_token_secret_comes_from_key_vault_in_azure() -> None:
    main = (ROOT / "infra/main.bicep").read_text()
    assert "SWITCHBOARD_TOKEN_SECRET" not in _bicep_object(main, "appSettings"), "never a plain app setting"
    assert "SWITCHBOARD_TOKEN_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.tokenSecretUri})'" in main
    assert "SWITCHBOARD_TOKEN_SECRET: keyVault.outputs.tokenSecretUri" in main  # the gateway's Container Apps secret
    gateway = (ROOT / "infra/modules/gateway.bicep").read_text()
    assert "keyVaultUrl: item.value" in gateway and "identity: identityId" in gateway
    vault = (ROOT / "infra/modules/keyvault.bicep").read_text()
    assert "enableRbacAuthorization: true" in vault and "@secure()\nparam tokenSecret string" in vault


def test_azure_services_are_reached_with_the_managed_identity_not_keys() -> None:
    main = (ROOT / "infra/main.bicep").read_text()
    settings = _bicep_object(main, "appSettings")
    assert "AZURE_CLIENT_ID: identity.outputs.clientId" in settings
    for key in ("COSMOS_KEY", "AZURE_OPENAI_API_KEY", "ACS_ACCESS_KEY", "SPEECH_KEY", "OPENAI_API_KEY"):
        assert key not in main, f"{key} is set in Azure"
    for module in ("cosmos", "ai"):
        assert "disableLocalAuth: true" in (ROOT / f"infra/modules/{module}.bicep").read_text()
    redis = (ROOT / "infra/modules/redis.bicep").read_text()
    assert "accessKeysAuthentication: 'Disabled'" in redis and "listKeys" not in redis
