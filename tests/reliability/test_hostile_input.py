"""Hostile input against a running local host (`python -m local`: Functions host, ACS emulator, media gateway).

Whatever a caller sends (broken or oversized Event Grid batches, forged or stolen tokens, a replayed handoff link,
garbage and floods on the media WebSocket) gets a clear refusal and changes nothing, and the host goes on serving
everyone else. Each test prints what it sent and how long the host took to refuse it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx
import pytest

from shared.tokens import TokenSigner
from tests.calls.gateway_peer import FakeGateway
from tests.handoff_links import sent_link
from tests.media_gateway.caller import AcsCaller, bad_peer
from tests.peers import free_port

SECRET = b"hostile-input-test-secret-" + b"x" * 40
ACCESS_KEY = "c2VjcmV0LWtleS1mb3ItdGhlLWhvc3RpbGUtaW5wdXQtdGVzdHM="
EVENTGRID = "/runtime/webhooks/EventGrid"
NOTIFICATION = {"aeg-event-type": "Notification", "Content-Type": "application/json"}
VALIDATION = {"aeg-event-type": "SubscriptionValidation", "Content-Type": "application/json"}


class System:
    def __init__(self, host, gateway_port: int, fake_gateway: FakeGateway) -> None:
        self.host = host
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self.fake_gateway = fake_gateway
        self.tokens = TokenSigner(SECRET)
        self.app = httpx.AsyncClient(base_url=host.url, timeout=60)

    async def healthy(self) -> None:
        response = await self.app.get("/healthz")
        assert response.status_code == 200, response.text
        session = await self.app.post("/api/webchat/sessions")
        assert session.status_code == 201 and session.json()["replies"], session.text

    async def session(self) -> dict:
        response = await self.app.post("/api/webchat/sessions")
        assert response.status_code == 201, response.text
        return response.json()

    def media_url(self, session: dict, call_id: str) -> str:
        """The media gateway URL the calls function would answer with, for this session (signed with the secret)."""
        claims = self.tokens.verify(session["token"], "webchat")
        token = self.tokens.issue("media", 600, sid=session["session_id"], cid=claims["cid"], call=call_id)
        return f"{self.gateway_url}/media?token={token}"


@pytest.fixture(scope="module")
async def system(local_host_factory):
    fake_gateway = FakeGateway(SECRET)  # where ACS (the emulator) streams the calls placed in the handoff test
    await fake_gateway.start()
    gateway_port = free_port()
    host = await asyncio.to_thread(
        local_host_factory,
        SWITCHBOARD_TOKEN_SECRET=SECRET.decode(),
        ACS_ACCESS_KEY=ACCESS_KEY,
        GATEWAY_PORT=str(gateway_port),
        GATEWAY_PUBLIC_URL=fake_gateway.url,
    )
    running = System(host, gateway_port, fake_gateway)
    yield running
    await running.app.aclose()
    await fake_gateway.stop()


def _event(index: int = 0, **changes) -> dict:
    event = {
        "id": f"hostile-{index}", "eventType": "Microsoft.Communication.IncomingCall", "subject": "x",
        "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1.0", "data": {"nonsense": True},
    }
    return {**event, **changes}


async def test_malformed_and_oversized_event_grid_batches_are_refused_and_the_host_keeps_serving(system: System):
    bodies: list[tuple[str, bytes, dict, set[int]]] = [
        ("not JSON", b"{this is not json", NOTIFICATION, {400}),
        ("a number, not a list", b"5", NOTIFICATION, {400}),
        ("a list of strings", b'["a", "b"]', NOTIFICATION, {400}),
        ("an empty list", b"[]", NOTIFICATION, {400}),
        ("30,000 nested arrays", b"[" * 30_000 + b"]" * 30_000, NOTIFICATION, {400}),
        ("10,000 events", json.dumps([{"id": str(i)} for i in range(10_000)]).encode(), NOTIFICATION, {413}),
        ("a 5 MB body", b"[" + b" " * (5 * 1024 * 1024) + b"]", NOTIFICATION, {413}),
        ("an event without id", json.dumps([{k: v for k, v in _event().items() if k != "id"}]).encode(),
         NOTIFICATION, {400}),
        ("an event without eventType", json.dumps([{k: v for k, v in _event().items() if k != "eventType"}]).encode(),
         NOTIFICATION, {400}),
        ("an event with a numeric id", json.dumps([_event(id=5)]).encode(), NOTIFICATION, {400}),
        ("an event with a bad time", json.dumps([_event(eventTime="yesterday")]).encode(), NOTIFICATION, {400}),
        ("a CloudEvent of specversion 0.3", json.dumps([{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}])
         .encode(), NOTIFICATION, {400}),
        ("no aeg-event-type header", json.dumps([_event()]).encode(), {"Content-Type": "application/json"}, {400}),
        ("validation with no code", json.dumps([_event(eventType="Microsoft.EventGrid.SubscriptionValidationEvent",
                                                       data={})]).encode(), VALIDATION, {400}),
        ("validation with a numeric code", json.dumps([_event(
            eventType="Microsoft.EventGrid.SubscriptionValidationEvent", data={"validationCode": 5})]).encode(),
         VALIDATION, {400}),
        ("validation of another event type", json.dumps([_event()]).encode(), VALIDATION, {400}),
    ]
    refused = 0
    logged = {"incoming_call": ("Microsoft.Communication.IncomingCall", "dropped a malformed IncomingCall event"),
              "whatsapp_events": ("Microsoft.Communication.AdvancedMessageReceived", "dropped WhatsApp event")}
    for function in ("incoming_call", "whatsapp_events"):
        url = f"{EVENTGRID}?functionName={function}"
        for what, body, headers, expected in bodies:
            started = time.monotonic()
            response = await system.app.post(url, content=body, headers=headers)
            took = time.monotonic() - started
            assert response.status_code in expected, f"{function}, {what}: {response.status_code} {response.text[:300]}"
            error = response.json()["error"]
            assert error and "Traceback" not in error, f"{function}, {what}: {error}"
            print(f"\n{function:16} {what:34} {len(body):>9} B -> {response.status_code} in {took * 1000:5.0f} ms: "
                  f"{error}", end="")
            refused += 1
        # An envelope that is fine around data that is not: logged and dropped (202), never redelivered forever.
        event_type, log_line = logged[function]
        for what, data in (("data of the wrong shape", {"nonsense": True}), ("data that is a list", [1]),
                           ("data that is a string", "hello")):
            event = _event(time.monotonic_ns(), eventType=event_type, data=data)
            response = await system.app.post(url, json=[event], headers=NOTIFICATION)
            assert response.status_code == 202, f"{function}, {what}: {response.status_code} {response.text[:300]}"
            await _logged(system, f"{log_line} {event['id']}")
            print(f"\n{function:16} {what:34} -> 202, logged: {log_line} {event['id']}", end="")
        await system.healthy()
    print(f"\n{refused} hostile batches refused; the host still serves")


async def _logged(system: System, line: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in system.host.stderr():
        assert time.monotonic() < deadline, f"the host did not log {line!r}"
        await asyncio.sleep(0.05)


async def test_forged_expired_and_stolen_web_chat_tokens_are_refused(system: System):
    mine, theirs = await system.session(), await system.session()
    messages = f"/api/webchat/sessions/{mine['session_id']}/messages"
    claims = system.tokens.verify(mine["token"], "webchat")
    expired = TokenSigner(SECRET, clock=lambda: time.time() - 7200).issue(
        "webchat", 3600, sid=mine["session_id"], cid=claims["cid"])
    other_secret = TokenSigner(b"not-the-host-secret-" + b"y" * 40).issue(
        "webchat", 3600, sid=mine["session_id"], cid=claims["cid"])
    payload, _, signature = mine["token"].partition(".")
    lifted = base64.urlsafe_b64encode(json.dumps({**claims, "sid": theirs["session_id"]}).encode()).decode().rstrip("=")
    cases = [
        ("forged signature", f"{payload}.{signature[::-1]}", 401),
        ("claims edited, signature kept", f"{lifted}.{signature}", 401),
        ("signed with another secret", other_secret, 401),
        ("expired an hour ago", expired, 401),
        ("non-ASCII garbage", "é.ü", 401),
        ("another session's token", theirs["token"], 403),
    ]
    for what, token, status in cases:
        for method, path, body in (("POST", messages, {"text": "what is my balance?"}),
                                   ("GET", f"/api/webchat/sessions/{mine['session_id']}", None)):
            header = f"Bearer {token}".encode()  # bytes: httpx would refuse to send the non-ASCII one
            response = await system.app.request(method, path, json=body, headers={"Authorization": header})
            assert response.status_code == status, f"{what}, {method}: {response.status_code} {response.text}"
            assert response.json()["error"]
        print(f"\n{what:32} -> {status}: {response.json()['error']}", end="")
    transcript = await system.app.get(f"/api/webchat/sessions/{mine['session_id']}",
                                      headers={"Authorization": f"Bearer {mine['token']}"})
    assert [t["role"] for t in transcript.json()["turns"]] == ["agent"], "no refused message reached the transcript"


async def test_oversized_and_malformed_web_chat_bodies_are_refused_and_store_nothing(system: System):
    mine = await system.session()
    auth = {"Authorization": f"Bearer {mine['token']}", "Content-Type": "application/json"}
    messages = f"/api/webchat/sessions/{mine['session_id']}/messages"
    cases = [
        ("a 5 MB message", json.dumps({"text": "x" * (5 * 1024 * 1024)}).encode()),
        ("5 MB of whitespace", b" " * (5 * 1024 * 1024)),
        ("deeply nested JSON", b"[" * 30_000 + b"]" * 30_000),  # under the size limit, over Python's recursion
        ("invalid UTF-8", b'{"text": "\xff\xfe"}'),
        ("a NUL-laden text", json.dumps({"text": "\u0000" * 100}).encode()),
    ]
    for what, body in cases:
        started = time.monotonic()
        response = await system.app.post(messages, content=body, headers=auth)
        took = time.monotonic() - started
        print(f"\n{what:24} {len(body):>9} B -> {response.status_code} in {took * 1000:4.0f} ms: "
              f"{response.text[:90]}", end="")
        assert response.status_code in (200, 400), f"{what}: {response.status_code} {response.text[:200]}"
        assert response.status_code == 400 or what == "a NUL-laden text", f"{what}: accepted"
        assert response.headers["content-type"].startswith("application/json") and response.json()
    nested = b"[" * 30_000 + b"]" * 30_000
    callback = system.tokens.issue("acs-callback", 600, sid="voice_x", cid="cus_x", call="x")  # a genuine URL token
    for route in ("/api/webchat/sessions", f"/api/calls/callbacks?token={callback}"):
        response = await system.app.post(route, content=nested, headers={"Content-Type": "application/json"})
        where = route.split("?")[0]
        print(f"\n{'30,000 nested arrays':24} to {where} -> {response.status_code}: {response.text}", end="")
        assert response.status_code == 400 and "nested too deeply" in response.json()["error"], response.text
    turns = (await system.app.get(f"/api/webchat/sessions/{mine['session_id']}", headers=auth)).json()["turns"]
    assert [t["text"] for t in turns if t["role"] == "customer"] == ["\u0000" * 100], "only the accepted turn is kept"
    await system.healthy()


async def test_a_handoff_link_is_redeemed_once_even_when_replayed_at_the_same_moment(system: System):
    async with httpx.AsyncClient(base_url=system.host.acs_url, timeout=30) as acs:
        placed = (await acs.post("/_emulator/calls", json={"from": "+15555550123"})).json()
        deadline = time.monotonic() + 20
        while (call := (await acs.get(f"/_emulator/calls/{placed['id']}")).json()).get("media") != "streaming":
            assert time.monotonic() < deadline, f"the app did not answer the call: {call}"
            await asyncio.sleep(0.1)
    media = parse_qs(urlsplit(call["answer"]["mediaStreamingOptions"]["transportUrl"]).query)["token"][0]
    claims = system.tokens.verify(media, "media")
    # The call-control token the gateway mints when it takes the call's media socket
    control = system.tokens.issue("call-control", 600, **{k: claims[k] for k in ("call", "sid", "cid")})
    started = await system.app.post(
        "/api/handoffs", json={"customer_id": claims["cid"], "session_id": claims["sid"], "to_channel": "webchat"},
        headers={"Authorization": f"Bearer {control}"})
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=system.host.acs_url, timeout=30) as acs:  # the link the customer got
        while not (link := sent_link((await acs.get("/_emulator/messages")).json(), started.json()["id"])):
            assert time.monotonic() < deadline, "the handoff never sent its link"
            await asyncio.sleep(0.2)
    token = parse_qs(urlsplit(link).query)["handoff"][0]
    async with httpx.AsyncClient(base_url=system.host.acs_url, timeout=30) as acs:  # the caller has what they need
        await acs.post(f"/_emulator/calls/{placed['id']}/hangup")

    racing = await asyncio.gather(*(system.app.post("/api/webchat/sessions", json={"handoff_token": token})
                                    for _ in range(6)))
    statuses = sorted(r.status_code for r in racing)
    later = await system.app.post("/api/webchat/sessions", json={"handoff_token": token})
    for forged in (token[:-3] + "AAA", "é" + token, token.replace(".", "..", 1)):
        response = await system.app.post("/api/webchat/sessions", json={"handoff_token": forged})
        assert response.status_code == 401, f"{forged!r}: {response.status_code} {response.text}"
    print(f"\n6 redemptions of one link at once -> {statuses}; one more later -> {later.status_code}: "
          f"{later.json()['error']}")
    assert statuses == [201, 401, 401, 401, 401, 401], [r.text for r in racing]
    assert later.status_code == 401 and "link" in later.json()["error"]


# --- the media WebSocket of the gateway the host started --------------------------------------------------------

METADATA = json.dumps(
    {"kind": "AudioMetadata", "audioMetadata": {"sampleRate": 16000, "channels": 1, "encoding": "PCM"}})
SILENT = json.dumps({"kind": "AudioData", "audioData": {"data": base64.b64encode(bytes(640)).decode(), "silent": True}})


async def _refused(http: aiohttp.ClientSession, url: str) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as error:
        await http.ws_connect(url)
    return error.value.status


async def _bad_peer(http: aiohttp.ClientSession, url: str, *messages: str | bytes) -> tuple[int | None, float]:
    """The gateway's close code for a peer sending `messages` as fast as it can, and how long it took to come."""
    started = time.monotonic()
    return await bad_peer(http, url, *messages), time.monotonic() - started


async def test_the_media_gateway_drops_bad_peers_and_floods_while_a_good_call_keeps_talking(system: System):
    good = system.media_url(await system.session(), "good-call")
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 60
        while True:  # the host answers before the gateway it started is listening
            try:
                async with http.get(f"{system.gateway_url}/healthz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, "the media gateway never answered /healthz"
            await asyncio.sleep(0.1)
        base = f"{system.gateway_url}/media"
        assert await _refused(http, base) == 401
        assert await _refused(http, f"{base}?token=not-a-token") == 403
        assert await _refused(http, f"{base}?token={system.tokens.issue('webchat', 600, sid='x', cid='y')}") == 403

        connected = time.monotonic()
        caller = await AcsCaller.connect(http, good)
        first = await caller.wait_audio(connected, timeout=90)  # the greeting (the engines load on first use)
        during = time.monotonic()
        cases = {
            "not JSON": (METADATA, "this is not json"),
            "a kind that is not a string": (METADATA, '{"kind": 5}'),
            "audio that is not base64": (METADATA, '{"kind": "AudioData", "audioData": {"data": "@@@not base64@@@"}}'),
            "a binary frame": (METADATA, b"\x00\x01binary"),
            "30,000 nested arrays": (METADATA, "[" * 30_000 + "]" * 30_000),
            "a 1 MB message": (METADATA, "x" * (1024 * 1024)),
            "a minute of audio at once": (METADATA, *[SILENT] * 3000),
            "5,000 messages of an unused kind": (METADATA, *['{"kind": "MarkData", "markData": {}}'] * 5000),
        }
        bad = [system.media_url(await system.session(), f"bad-{i}") for i in range(len(cases))]
        results = await asyncio.gather(*(_bad_peer(http, url, *messages) for url, messages in zip(bad, cases.values())))
        for what, (code, took) in zip(cases, results):
            print(f"\n{what:34} -> closed {code} after {took * 1000:6.0f} ms", end="")
        assert [code for code, _ in results] == [1007, 1007, 1007, 1003, 1007, 1009, 1008, 1008]
        for index in range(len(cases)):  # each drop is logged with its reason
            await _logged(system, f"call bad-{index} dropped: ")

        await asyncio.sleep(0.5)
        until = time.monotonic()
        async with http.get(f"{system.gateway_url}/healthz") as response:
            health = await response.json()
        frames = [r.at for r in caller.received if r.kind == "audio" and during <= r.at <= until]
        gaps = [b - a for a, b in zip(frames, frames[1:])]
        print(f"\ngood call: greeting after {first.at - connected:.1f} s, {len(frames)} frames in the "
              f"{until - during:.1f} s "
              f"of abuse, longest gap {max(gaps, default=0) * 1000:.0f} ms; gateway health {response.status} "
              f"with {health['calls']} call(s)")
        assert not caller.closed.is_set(), f"the good call was closed ({caller.close_code})"
        assert response.status == 200 and health["calls"] == 1
        assert frames, "the good call got no audio while the others were dropped"
        await caller.close()
    await system.healthy()
