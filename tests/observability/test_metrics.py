"""Metrics a real local host exports after some turns, and the live summary it prints from the same instruments.

The host runs with the JSON-lines exporter (SWITCHBOARD_TELEMETRY=<file>, a point every 300 ms) and a live summary
every second; this module's host serves only these tests, so every count is exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest

from local.summary import summary_line
from tests.observability.telemetry_file import Exported
from tests.peers.local_host import LocalHost
from tests.waiting import eventually as wait_until

eventually = partial(wait_until, timeout=30)
WEBCHAT_TURNS = ("hello", "what's my balance?", "my account number is 100200300", "thanks")
PHONE = "+15555550199"


@dataclass
class Observed:
    host: LocalHost
    exported: Exported
    client: httpx.Client

    def url(self, path: str) -> str:
        return f"{self.host.url}{path}"

    def post_events(self, events: list[dict[str, Any]], function: str = "whatsapp_events") -> int:
        response = self.client.post(self.url(f"/runtime/webhooks/EventGrid?functionName={function}"), json=events,
                                    headers={"aeg-event-type": "Notification"})
        return response.status_code


@pytest.fixture(scope="module")
def observed(local_host_factory, tmp_path_factory) -> Iterator[Observed]:
    work = tmp_path_factory.mktemp("metrics")
    host = local_host_factory(
        SWITCHBOARD_TELEMETRY=str(work / "telemetry.jsonl"),
        OTEL_METRIC_EXPORT_INTERVAL="300",
        SWITCHBOARD_SUMMARY_SECONDS="1",
    )
    with httpx.Client(timeout=60) as client:
        observed = Observed(host, Exported(work / "telemetry.jsonl"), client)
        _activity(observed)
        yield observed


def _activity(observed: Observed) -> None:
    """Four web chat turns, one WhatsApp message delivered twice, one malformed WhatsApp event."""
    created = observed.client.post(observed.url("/api/webchat/sessions")).json()
    for text in WEBCHAT_TURNS:
        response = observed.client.post(observed.url(f"/api/webchat/sessions/{created['session_id']}/messages"),
                                        json={"text": text}, headers={"Authorization": f"Bearer {created['token']}"})
        assert response.status_code == 200, response.text

    built = observed.client.post(f"{observed.host.acs_url}/_emulator/inbound",
                                 json={"from": PHONE, "text": "is there an outage?", "deliver": False}).json()
    assert observed.post_events([built["event"]]) == 202
    assert observed.post_events([built["event"]]) == 202  # Event Grid redelivers: answered, not processed again
    malformed = {**built["event"], "id": "malformed-1", "data": {"from": PHONE}}
    assert observed.post_events([malformed]) == 202  # dropped with a reason: redelivering it would not help


def test_turn_latency_is_a_histogram_per_channel_counting_every_turn(observed: Observed) -> None:
    webchat = eventually(lambda: (p := observed.exported.metric("switchboard.turn.duration", channel="webchat"))
                         and p["count"] == len(WEBCHAT_TURNS) and p)
    assert webchat["unit"] == "ms" and webchat["attributes"] == {"channel": "webchat", "outcome": "ok"}
    assert 0 < webchat["min"] <= webchat["max"] and webchat["sum"] > 0
    # The redelivered WhatsApp message ran one turn, not two.
    whatsapp = eventually(lambda: observed.exported.metric("switchboard.turn.duration", channel="whatsapp"))
    assert whatsapp["count"] == 1


def test_a_redelivered_whatsapp_event_counts_as_a_dedup_hit(observed: Observed) -> None:
    hits = eventually(lambda: observed.exported.metric("switchboard.dedup.hits", source="whatsapp"))
    assert hits["value"] == 1


def test_a_malformed_event_counts_as_an_error(observed: Observed) -> None:
    errors = eventually(lambda: observed.exported.metric("switchboard.errors", kind="malformed_event"))
    assert errors["value"] == 1 and errors["attributes"]["where"] == "whatsapp"
    assert observed.exported.total("switchboard.errors") == 1  # and nothing else went wrong


def test_the_live_summary_line_counts_what_happened(observed: Observed) -> None:
    def totals() -> dict[str, int] | None:
        lines = [line for line in observed.host.stdout().splitlines() if line.startswith("· last 1s:")]
        found = {
            "webchat": sum(int(m) for line in lines for m in re.findall(r"webchat (\d+) turns?", line)),
            "whatsapp": sum(int(m) for line in lines for m in re.findall(r"whatsapp (\d+) turns?", line)),
            "dedup": sum(int(m) for line in lines for m in re.findall(r"dedup (\d+)", line)),
            "errors": sum(int(m) for line in lines for m in re.findall(r"errors (\d+)", line)),
        }
        return found if found == {"webchat": 4, "whatsapp": 1, "dedup": 1, "errors": 1} else None

    assert eventually(totals), observed.host.stdout()
    lines = [line for line in observed.host.stdout().splitlines() if line.startswith("· last")]
    assert all(re.search(r"turns? p50 \d+ ms", line) for line in lines if "turn" in line), lines


def test_a_quiet_window_prints_nothing_and_voice_reads_the_gateways_turns() -> None:
    assert summary_line(10, {}, {}) is None
    assert summary_line(10, {}, {"calls": 1, "turns": [900.0, 1250.0, 1400.0]}) == (
        "· last 10s: voice 1 call, 3 turns p50 1.2 s · dedup 0 · errors 0"
    )
    assert summary_line(10, {}, {"calls": 0, "turns": [80.0]}) == "· last 10s: voice 1 turn p50 80 ms · dedup 0 · errors 0"


def test_a_500_from_an_http_trigger_counts_as_an_error(tmp_path) -> None:
    """A handler that fails unexpectedly, run under `handles_errors` in a fresh process exporting to a file."""
    import subprocess
    import sys

    from tests.peers.local_host import PROJECT_ROOT

    script = """
import asyncio
import azure.functions as func
from functions.http import handles_errors
from shared.telemetry import export

export.configure("test")

@handles_errors
async def ops_broken(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("a bug")

response = asyncio.run(ops_broken(func.HttpRequest("GET", "http://127.0.0.1/api/broken", body=b"")))
assert response.status_code == 500, response.status_code
export.shutdown()
"""
    path = tmp_path / "telemetry.jsonl"
    env = {"PATH": "/usr/bin:/bin", "SWITCHBOARD_TELEMETRY": str(path), "SWITCHBOARD_SKIP_LOCAL_SETTINGS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    exported = Exported(path)
    errors = exported.metric("switchboard.errors", kind="http_5xx")
    assert errors["value"] == 1
    assert errors["attributes"] == {"kind": "http_5xx", "where": "ops_broken", "status_code": 500}
    (span,) = exported.spans("ops_broken")
    assert span["kind"] == "SERVER" and span["status"] == "ERROR" and span["attributes"]["http.status_code"] == 500
