"""Traces and metrics of a customer's journey, on the OpenTelemetry API.

Only opentelemetry-api is imported here (the function app already pays for it through azure-core), so recording is
a no-op costing next to nothing until `configure()` (shared/telemetry/export.py) installs the SDK with an exporter.

One trace follows a customer across channels. An inbound event opens a span; a handoff started from it carries the
W3C `traceparent` of its start span in the orchestration input and on the customer's record, because the Durable
orchestrator replays and its activities run as separate invocations: each activity opens its span as a child of
that traceparent (never in the orchestrator), and the first turn on the new channel does too, linked to the span of
the event that delivered it.

What goes on spans and metrics identifies and counts (customer id, session id, channel, agent, outcome); never a
phone number or anything the customer wrote.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "SpanKind", "call_abandoned", "continuing", "dedup_hit", "error", "handoff_outcome", "handoff_started", "inject",
    "publish_figures", "span", "traceparent", "turn",
]

_tracer = trace.get_tracer("switchboard")
_meter = metrics.get_meter("switchboard")
_propagator = TraceContextTextMapPropagator()

# Metric names are the contract with dashboards and docs/observability.md: change them there too.
TURN_DURATION = "switchboard.turn.duration"
HANDOFF_STARTED = "switchboard.handoff.started"
HANDOFF_OUTCOMES = "switchboard.handoff.outcomes"
HANDOFF_DURATION = "switchboard.handoff.duration"
DEDUP_HITS = "switchboard.dedup.hits"
ERRORS = "switchboard.errors"
CALLS_ABANDONED = "switchboard.calls.abandoned"
#: The design's success figures (shared/ops_metrics.py), as last computed: a rate per figure, the seconds and turns
#: percentiles, and the count each is computed over.
FIGURE_RATE = "switchboard.figures.rate"
FIGURE_SECONDS = "switchboard.figures.seconds"
FIGURE_TURNS = "switchboard.figures.turns"
FIGURE_COUNT = "switchboard.figures.count"

_turn_duration = _meter.create_histogram(
    TURN_DURATION, unit="ms", description="One customer turn, from the inbound message to the replies sent or returned"
)
_handoff_started = _meter.create_counter(HANDOFF_STARTED, description="Channel handoffs started")
_handoff_outcomes = _meter.create_counter(
    HANDOFF_OUTCOMES,
    description="Channel handoffs that ended: engaged, expired, or failed (the invite could not go out)",
)
_handoff_duration = _meter.create_histogram(
    HANDOFF_DURATION, unit="s", description="From a handoff's start to its outcome"
)
_dedup_hits = _meter.create_counter(DEDUP_HITS, description="Events ignored because they were already processed")
_errors = _meter.create_counter(ERRORS, description="Server errors (5xx) and inbound events dropped as malformed")
_calls_abandoned = _meter.create_counter(
    CALLS_ABANDONED, description="Calls ended because the caller said nothing through the reprompt and the goodbye"
)

# The latest figures GET /api/ops/metrics computed; the gauges below report them at each export.
_figures: dict[str, Any] = {}


def _observe(kind: str):
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attributes) for value, attributes in _figure_points(_figures).get(kind, [])]

    return callback


_meter.create_observable_gauge(FIGURE_RATE, [_observe("rate")], unit="1",
                               description="Success figures as shares: context preserved, handoff success, "
                                           "resolution, escalation, abandonment (over the figures' window)")
_meter.create_observable_gauge(FIGURE_SECONDS, [_observe("seconds")], unit="s",
                               description="Channel-switch time and time to resolution, p50 and p95")
_meter.create_observable_gauge(FIGURE_TURNS, [_observe("turns")],
                               description="Customer turns to resolution, p50 and p95")
_meter.create_observable_gauge(FIGURE_COUNT, [_observe("count")],
                               description="How many handoffs or conversations each success figure is computed over")


# Traces ------------------------------------------------------------------------------------------------------------


def _context(carrier_or_traceparent: str | Mapping[str, str] | None):
    if not carrier_or_traceparent:
        return None
    if isinstance(carrier_or_traceparent, str):
        carrier_or_traceparent = {"traceparent": carrier_or_traceparent}
    headers = {key.lower(): value for key, value in carrier_or_traceparent.items()}
    if "traceparent" not in headers:
        return None
    return _propagator.extract(headers)


@contextmanager
def span(
    name: str,
    *,
    parent: str | Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    links: list[Link] | None = None,
    start_time: int | None = None,
    **attributes: str | int | float | bool | None,
) -> Iterator[Span]:
    """A span around the block. `parent` is a traceparent string or a carrier of headers (an HTTP request's);
    without one, the current span is the parent. An exception escaping the block marks the span as an error."""
    attrs = {key: value for key, value in attributes.items() if value is not None}
    with _tracer.start_as_current_span(
        name, context=_context(parent), kind=kind, links=links, attributes=attrs, start_time=start_time
    ) as current:
        yield current


def traceparent() -> str | None:
    """The current span as a W3C traceparent, to carry across a boundary OpenTelemetry cannot see (None if off)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """`headers` plus the current traceparent, for an outbound HTTP request."""
    headers = dict(headers or {})
    _propagator.inject(headers)
    return headers


@contextmanager
def continuing(
    name: str, handoff_traceparent: str | None, *, start_time: int | None = None,
    **attributes: str | int | float | bool | None,
) -> Iterator[Span]:
    """The first turn on a new channel: a child of the handoff that brought the customer (its traceparent on the
    record), linked to the span of the event that delivered it. Without a traceparent, a plain child span.
    `start_time` (ns since the epoch) backdates it to when the inbound request began."""
    here = trace.get_current_span().get_span_context()
    links = [Link(here)] if handoff_traceparent and here.is_valid else None
    with span(name, parent=handoff_traceparent, links=links, start_time=start_time,
              continues_handoff=bool(handoff_traceparent) or None, **attributes) as current:
        yield current


# Metrics -----------------------------------------------------------------------------------------------------------


@contextmanager
def turn(
    channel: str, *, continues: str | None = None, **attributes: str | int | float | bool | None
) -> Iterator[Span]:
    """One customer turn on a channel: a span, and its duration on the turn histogram (errors included).

    `continues`: the traceparent of the handoff this turn continues; the turn then joins that trace (see
    `continuing`)."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        with continuing(f"{channel}.turn", continues, channel=channel, **attributes) as current:
            yield current
    except BaseException:
        outcome = "error"
        raise
    finally:
        _turn_duration.record((time.perf_counter() - started) * 1000, {"channel": channel, "outcome": outcome})


def handoff_started(from_channel: str, to_channel: str) -> None:
    _handoff_started.add(1, {"from_channel": from_channel, "to_channel": to_channel})


def handoff_outcome(outcome: str, to_channel: str, started_at: str | None = None) -> None:
    """A handoff ended (engaged / expired / failed); `started_at` (ISO time on the record) gives its duration."""
    attributes = {"outcome": outcome, "to_channel": to_channel}
    _handoff_outcomes.add(1, attributes)
    if started_at:
        try:
            began = datetime.fromisoformat(started_at)
        except ValueError:
            return
        _handoff_duration.record(max(0.0, (datetime.now(timezone.utc) - began).total_seconds()), attributes)
    current = trace.get_current_span()
    current.add_event("handoff." + outcome, {"to_channel": to_channel})


def call_abandoned(reason: str) -> None:
    """A call ended as abandoned (`reason`: silence, the caller said nothing after a reprompt)."""
    _calls_abandoned.add(1, {"reason": reason})


def dedup_hit(source: str) -> None:
    """An event was recognised as already processed and ignored (`source`: whatsapp, call_event, queue, ...)."""
    _dedup_hits.add(1, {"source": source})
    trace.get_current_span().set_attribute("dedup.hit", True)


def error(kind: str, where: str, status_code: int | None = None) -> None:
    """A server error (`http_5xx`) or an inbound event dropped as malformed (`malformed_event`)."""
    attributes: dict[str, str | int] = {"kind": kind, "where": where}
    if status_code is not None:
        attributes["status_code"] = status_code
    _errors.add(1, attributes)
    current = trace.get_current_span()
    current.set_status(Status(StatusCode.ERROR, kind))


def publish_figures(figures: dict[str, Any]) -> None:
    """The success figures just computed (shared/ops_metrics.py) become what the figure gauges report."""
    global _figures
    _figures = figures


#: figure -> (its rate key, the gauge its percentiles go to, their key) in the figures' JSON.
_FIGURES = {
    "context_preservation": ("rate", None, None),
    "handoff_success": ("rate", None, None),
    "channel_switch_seconds": (None, "seconds", ""),
    "resolution": ("rate", "seconds", "seconds"),
    "escalations": ("rate", None, None),
    "abandonment": ("rate", None, None),
}


def _figure_points(figures: dict[str, Any]) -> dict[str, list[tuple[float, dict[str, Any]]]]:
    """Each gauge's points: a figure with nothing to count reports its count of 0 and no rate (never 100%)."""
    points: dict[str, list[tuple[float, dict[str, Any]]]] = {"rate": [], "seconds": [], "turns": [], "count": []}
    if not figures:
        return points
    window = figures["window"]["hours"]
    for name, (rate_key, gauge, key) in _FIGURES.items():
        figure = figures.get(name) or {}
        base = {"figure": name, "window_hours": window}
        points["count"].append((figure.get("n", 0), base))
        if rate_key and figure.get(rate_key) is not None:
            points["rate"].append((figure[rate_key], base))
        if gauge is not None:
            values = figure.get(key) if key else figure
            for quantile in ("p50", "p95"):
                if (values or {}).get(quantile) is not None:
                    points[gauge].append((values[quantile], {**base, "quantile": quantile}))
    resolution = figures.get("resolution") or {}
    for quantile in ("p50", "p95"):
        if (resolution.get("turns") or {}).get(quantile) is not None:
            points["turns"].append((resolution["turns"][quantile],
                                    {"figure": "resolution", "window_hours": window, "quantile": quantile}))
    return points
