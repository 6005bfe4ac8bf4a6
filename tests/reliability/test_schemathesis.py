"""Schemathesis against the running app: every operation of /api/openapi.json, fuzzed, with valid credentials.

A local host (`python -m local` with its ACS emulator) serves the app; a call is placed through the emulator (with a
scripted gateway peer at the media WebSocket, tests/calls/gateway_peer.py) so the call routes get the real media and
callback tokens of a live call, a handoff of that call is started for the handoff status route, and a web chat
session is created over the API for the per-session routes. The schemathesis CLI then runs from .venv as a
subprocess with those credentials and path values (examples, coverage, fuzzing and stateful phases), checking that
no answer is a server error, that every status code, content type, documented header and JSON body matches the
document, that requests the document allows are accepted and requests it forbids are refused.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.notifications import START_AUDIENCE
from shared.tokens import TokenSigner
from tests.calls.gateway_peer import FakeGateway
from tests.peers import free_port

SECRET = b"schemathesis-test-secret-" + b"x" * 40
ACCESS_KEY = "c2VjcmV0LWtleS1mb3ItdGhlLXNjaGVtYXRoZXNpcy10ZXN0cw=="
CALLER = "+15555550100"  # Jordan Lee in scenarios/utilities
#: No server errors; every status, content type, documented header and body as documented; and the document neither
#: refuses what the app accepts nor promises what it refuses.
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
          "response_schema_conformance", "positive_data_acceptance", "negative_data_rejection")
MAX_EXAMPLES = 120  # per operation and phase: under a minute for the 23 operations on two busy cores
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def _live_call(host, acs_url: str) -> dict:
    async with httpx.AsyncClient(base_url=acs_url, timeout=20) as acs:
        placed = await acs.post("/_emulator/calls", json={"from": CALLER})
        assert placed.status_code == 201, placed.text
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            call = (await acs.get(f"/_emulator/calls/{placed.json()['id']}")).json()
            if call.get("media") == "streaming":
                return call
            await asyncio.sleep(0.1)
    raise AssertionError(f"the app did not answer the call: {call}")


def _statuses(har: Path) -> dict[str, Counter]:
    """Status codes per documented operation, from schemathesis's HAR record of every request it sent."""
    templates = [
        (re.compile("^/api/calls/[^/]+/hangup$"), "POST /api/calls/{call_id}/hangup"),
        (re.compile("^/api/calls/[^/]+/transfer$"), "POST /api/calls/{call_id}/transfer"),
        (re.compile("^/api/calls/callbacks$"), "POST /api/calls/callbacks"),
        (re.compile("^/api/calls/placed/[^/]+$"), "GET /api/calls/placed/{call_id}"),
        (re.compile("^/api/ops/outages/[^/]+/restored$"), "POST /api/ops/outages/{outage_id}/restored"),
        (re.compile("^/api/calls/[^/]+$"), "GET /api/calls/{call_id}"),
        (re.compile("^/api/handoffs/[^/]+$"), "GET /api/handoffs/{instance_id}"),
        (re.compile("^/api/webchat/sessions/[^/]+/messages$"), "POST /api/webchat/sessions/{session_id}/messages"),
        (re.compile("^/api/webchat/sessions/[^/]+/close$"), "POST /api/webchat/sessions/{session_id}/close"),
        (re.compile("^/api/customers/[^/]+/syntheses$"), "GET /api/customers/{customer_id}/syntheses"),
        (re.compile("^/api/webchat/sessions/[^/]+$"), "GET /api/webchat/sessions/{session_id}"),
        *((re.compile(f"^/api/desk/escalations/[^/]+/{action}$"),
           f"POST /api/desk/escalations/{{escalation_id}}/{action}") for action in ("claim", "messages", "return", "close")),
        (re.compile("^/api/desk/escalations/[^/]+$"), "GET /api/desk/escalations/{escalation_id}"),
    ]
    counts: dict[str, Counter] = defaultdict(Counter)
    for entry in json.loads(har.read_text(encoding="utf-8"))["log"]["entries"]:
        method, path = entry["request"]["method"], urlsplit(entry["request"]["url"]).path
        name = next((n for pattern, n in templates if pattern.match(path) and n.startswith(f"{method} ")),
                    f"{method} {path}")
        counts[name][entry["response"]["status"]] += 1
    return counts


def _config(
    path: Path, *, session_id: str, token: str, call_id: str, control: str, callback: str, instance_id: str,
    desk_cookie: str, escalation_id: str, start: str, closing: dict, customer_id: str,
) -> None:
    path.write_text(
        f"""
[auth.openapi.webchatToken]
bearer = {json.dumps(token)}
[auth.openapi.callControlToken]
bearer = {json.dumps(control)}
[auth.openapi.callbackToken]
api_key = {json.dumps(callback)}
[auth.openapi.notificationStartToken]
bearer = {json.dumps(start)}
[auth.openapi.functionKey]
api_key = "the-local-host-asks-for-none"
[auth.openapi.deskSignIn]
api_key = {json.dumps(desk_cookie)}

[checks]
enabled = false
{chr(10).join(f"{check}.enabled = true" for check in CHECKS)}

[parameters]
"path.session_id" = {json.dumps(session_id)}
"path.call_id" = {json.dumps(call_id)}
"path.instance_id" = {json.dumps(instance_id)}
"path.escalation_id" = {json.dumps(escalation_id)}
"path.customer_id" = {json.dumps(customer_id)}
# Long polls answer at once: a generated wait of 25 s on every case would take the run past its time.
"query.wait" = 0

# Closing a session ends it: the close is aimed at a session of its own, so the other routes keep theirs open (with
# their token, which that session refuses: 403; the live tests close sessions for real).
[[operations]]
include-operation-id-regex = "^closeSession$"
[operations.parameters]
"path.session_id" = {json.dumps(closing["session_id"])}

# The function-key routes: this host runs without LOCAL_FUNCTION_KEY (as `make run` does, and Core Tools), so a
# request without a key is not refused here; tests/outbound/test_outbound_auth.py runs one with the key set.
[[operations]]
include-operation-id-regex = "^(getQueue|updateQueue|getHandoff|getOpsMetrics|outageRestored|placeCall|getPlacedCall|getSyntheses)$"
[operations.checks.negative_data_rejection]
enabled = false

# A call to a number on no customer record needs consent in the body: a body the schema allows is refused with 400
# when the number is on no record, which only the records can tell (the operators' contract asks for 400 there).
[[operations]]
include-operation-id-regex = "^placeCall$"
[operations.checks.positive_data_acceptance]
enabled = false
""",
        encoding="utf-8",
    )


async def _desk_supervisor_and_escalation(app: httpx.AsyncClient) -> tuple[str, str]:
    """A supervisor's desk sign-in, and a web chat customer waiting for a person, for the desk's routes."""
    signed_in = await app.get("/.auth/login/dev", params={"agent": "Fuzz Tester", "role": "supervisor"})
    assert signed_in.status_code == 302, signed_in.text
    cookie = signed_in.cookies["AppServiceAuthSession"]
    app.cookies.clear()
    customer = (await app.post("/api/webchat/sessions")).json()
    asked = await app.post(f"/api/webchat/sessions/{customer['session_id']}/messages",
                           json={"text": "I want to talk to a person"},
                           headers={"Authorization": f"Bearer {customer['token']}"})
    assert asked.status_code == 200, asked.text
    queue = (await app.get("/api/desk/queue", headers={"Cookie": f"AppServiceAuthSession={cookie}"})).json()
    return cookie, queue["waiting"][0]["escalation_id"]


async def test_every_operation_holds_to_the_document_under_fuzzing(local_host_factory, tmp_path):
    assert SCHEMATHESIS.exists(), f"{SCHEMATHESIS} is missing: `make setup` installs requirements-dev.txt"
    gateway = FakeGateway(SECRET)
    await gateway.start()
    try:
        host = await asyncio.to_thread(
            local_host_factory,
            SWITCHBOARD_TOKEN_SECRET=SECRET.decode(),
            ACS_ACCESS_KEY=ACCESS_KEY,
            GATEWAY_PORT=str(free_port()),
            GATEWAY_PUBLIC_URL=gateway.url,
        )
        call = await _live_call(host, host.acs_url)
        media = parse_qs(urlsplit(call["answer"]["mediaStreamingOptions"]["transportUrl"]).query)["token"][0]
        callback = parse_qs(urlsplit(call["answer"]["callbackUri"]).query)["token"][0]
        claims = TokenSigner(SECRET).verify(media, "media")
        # What the gateway mints for the call when it takes the media socket
        control = TokenSigner(SECRET).issue("call-control", 600, **{k: claims[k] for k in ("call", "sid", "cid")})
        async with httpx.AsyncClient(base_url=host.url, timeout=20) as app:
            session = (await app.post("/api/webchat/sessions")).json()
            closing = (await app.post("/api/webchat/sessions")).json()
            desk_cookie, escalation_id = await _desk_supervisor_and_escalation(app)
            document = (await app.get("/api/openapi.json")).json()
            handoff = await app.post(  # the caller asks to continue on web chat, as the gateway would pass on
                "/api/handoffs", json={"customer_id": claims["cid"], "session_id": claims["sid"],
                                       "to_channel": "webchat"}, headers={"Authorization": f"Bearer {control}"})
            assert handoff.status_code == 202, handoff.text
        # Read from a file: schemathesis leaves out the operation it loaded the document from.
        (tmp_path / "openapi.json").write_text(json.dumps(document), encoding="utf-8")
        config = tmp_path / "schemathesis.toml"
        _config(config, session_id=session["session_id"], token=session["token"], call_id=call["id"], control=control,
                callback=callback, instance_id=handoff.json()["id"], desk_cookie=desk_cookie,
                escalation_id=escalation_id,
                start=TokenSigner(SECRET).issue(START_AUDIENCE, 600, cid=claims["cid"]), closing=closing,
                customer_id=claims["cid"])

        started = time.monotonic()
        result = await asyncio.to_thread(
            subprocess.run,
            [
                str(SCHEMATHESIS), "--config-file", str(config), "run", str(tmp_path / "openapi.json"),
                "--url", host.url, "--max-examples", str(MAX_EXAMPLES),
                "--phases", "examples,coverage,fuzzing,stateful",
                "--workers", "1",  # worker threads trip a CPython 3.11 ast bug inside hypothesis
                "--seed", "7", "--no-shrink",
                "--request-timeout", "30", "--generation-database", "none", "--no-color",
                "--report", "junit,har", "--report-junit-path", str(tmp_path / "junit.xml"),
                "--report-har-path", str(tmp_path / "requests.har"),
            ],
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
        )
        elapsed = time.monotonic() - started
    finally:
        await gateway.stop()

    out = result.stdout + result.stderr
    operations = re.search(r"Selected: (\d+)/\d+\s+Tested: (\d+)", out)
    cases = re.search(r"Test cases:\s*([^\n]+)", out)
    junit = (tmp_path / "junit.xml").read_text(encoding="utf-8") if (tmp_path / "junit.xml").exists() else ""
    failures = len(re.findall(r"<failure", junit))
    print(f"\nschemathesis {elapsed:.0f} s: operations {operations.group(2) if operations else '?'} tested of "
          f"{operations.group(1) if operations else '?'}; test cases {cases.group(1) if cases else '?'}; "
          f"failing operations {failures}")
    statuses = _statuses(tmp_path / "requests.har")
    operations_documented = {f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item
                             if m != "parameters"}
    other: Counter = Counter()
    for operation, counts in sorted(statuses.items()):
        if operation in operations_documented:
            print(f"  {operation:50} {dict(sorted(counts.items()))}")
        else:
            other.update(counts)
    print(f"  {'methods the document does not list':50} {dict(sorted(other.items()))}")
    assert result.returncode == 0, out[-12000:]
    # The credentials worked: each operation that needs one got past it at least once.
    for operation in ("GET /api/webchat/sessions/{session_id}", "POST /api/webchat/sessions/{session_id}/messages",
                      "GET /api/calls/{call_id}", "GET /api/handoffs/{instance_id}", "GET /api/desk/queue",
                      "GET /api/desk/metrics", "GET /api/desk/escalations/{escalation_id}"):
        assert statuses[operation].get(200), f"{operation} never got a 200: {statuses[operation]}"
    documented = sum(1 for item in document["paths"].values() for method in item if method != "parameters")
    assert operations and operations.group(1) == operations.group(2) == str(documented), out[-4000:]
