"""With APPLICATIONINSIGHTS_CONNECTION_STRING set, the app exports through azure-monitor-opentelemetry; with
OTEL_EXPORTER_OTLP_ENDPOINT, through the OTLP/HTTP exporter.

The connection string is syntactically valid but fake: its IngestionEndpoint is a tiny HTTP server in this test that
records what is posted to it, and so is the OTLP endpoint. That server is a fake at the network boundary (where
Application Insights' ingestion service or a collector would be), not a patch of our code: the host process, the
distro and the exporters all run for real.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.waiting import eventually as wait_until

eventually = partial(wait_until, timeout=45)


class Ingestion(ThreadingHTTPServer):
    """Accepts every POST, like an ingestion endpoint or a collector, and keeps what was posted."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.posts]

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        """Application Insights envelopes (JSON arrays)."""
        found: list[dict[str, Any]] = []
        for path, body in list(self.posts):
            if path.endswith("/v2.1/track"):
                envelopes = json.loads(body or b"[]")
                found.extend(envelopes if isinstance(envelopes, list) else [envelopes])
        return found

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: Ingestion

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.posts.append((self.path, body))
        if self.path.endswith("/v2.1/track"):
            count = len(json.loads(body or b"[]"))
            answer = json.dumps({"itemsReceived": count, "itemsAccepted": count, "errors": []}).encode()
            kind = "application/json"
        else:  # OTLP/HTTP: an empty protobuf Export*ServiceResponse means all accepted
            answer, kind = b"", "application/x-protobuf"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ingestion() -> Iterator[Ingestion]:
    server = Ingestion()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _one_web_chat_turn(url: str) -> None:
    with httpx.Client(timeout=60) as client:
        created = client.post(f"{url}/api/webchat/sessions").json()
        reply = client.post(f"{url}/api/webchat/sessions/{created['session_id']}/messages",
                            json={"text": "what's my balance?"},
                            headers={"Authorization": f"Bearer {created['token']}"})
        assert reply.status_code == 200


def test_a_connection_string_sends_spans_and_metrics_to_its_ingestion_endpoint(local_host_factory, ingestion) -> None:
    host = local_host_factory(
        APPLICATIONINSIGHTS_CONNECTION_STRING=(
            f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={ingestion.url}"
        ),
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true",  # statsbeat and the control plane would call Microsoft
        APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED="true",
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        SWITCHBOARD_SUMMARY_SECONDS="0",
    )
    assert "exporting telemetry to azure-monitor" in host.stderr()
    _one_web_chat_turn(host.url)

    def sent(kind: str) -> list[dict[str, Any]]:
        return [e for e in ingestion.envelopes if e.get("data", {}).get("baseType") == kind]

    requests = eventually(lambda: [e for e in sent("RequestData")
                                   if e["data"]["baseData"].get("name") == "webchat_post_message"]
                          )
    turn = eventually(lambda: [e for e in sent("RemoteDependencyData")
                               if e["data"]["baseData"].get("name") == "webchat.turn"])
    assert requests[0]["tags"]["ai.operation.id"] == turn[0]["tags"]["ai.operation.id"]  # one trace
    assert requests[0]["iKey"] == "00000000-0000-0000-0000-000000000000"
    metrics = eventually(lambda: [m for e in sent("MetricData") for m in e["data"]["baseData"]["metrics"]
                                  if m["name"] == "switchboard.turn.duration"])
    assert metrics[0]["count"] >= 1
    assert all(path.endswith("/v2.1/track") for path in ingestion.paths)
    assert not sent("MessageData")  # logs stay with the platform (OTEL_LOGS_EXPORTER unset)


def test_an_otlp_endpoint_receives_spans_and_metrics(local_host_factory, ingestion) -> None:
    host = local_host_factory(
        OTEL_EXPORTER_OTLP_ENDPOINT=ingestion.url.rstrip("/"),
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        SWITCHBOARD_SUMMARY_SECONDS="0",
    )
    assert "exporting telemetry to otlp" in host.stderr()
    _one_web_chat_turn(host.url)

    def posted(path: str, needle: bytes) -> bool:
        return any(p == path and needle in body for p, body in list(ingestion.posts))

    eventually(lambda: posted("/v1/traces", b"webchat.turn"))  # protobuf keeps strings as they are
    eventually(lambda: posted("/v1/metrics", b"switchboard.turn.duration"))
