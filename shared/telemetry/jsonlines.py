"""Spans and metric points as JSON lines, on stderr or appended to a file: telemetry a person or a test can read.

One line per span, written as it ends; one line per metric point (cumulative) at each export. Nothing else reads
this format: it is for `SWITCHBOARD_TELEMETRY=console` or `=<path>` on one machine.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class Sink:
    """Appends whole lines in one write, so processes sharing a file (the host and its gateway) never interleave."""

    def __init__(self, path: str | None, service_name: str) -> None:
        self.service = service_name
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        data = "".join(json.dumps({"service": self.service, **r}, default=str) + "\n" for r in records)
        if self._fd is None:
            sys.stderr.write(data)
            sys.stderr.flush()
        else:
            os.write(self._fd, data.encode())


class JsonSpanExporter(SpanExporter):
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._sink.write([span_record(span) for span in spans])
        return SpanExportResult.SUCCESS


class JsonMetricExporter(MetricExporter):
    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self._sink = sink

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self._sink.write([
            point_record(metric, point)
            for resource in metrics_data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
        ])
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def span_record(span: ReadableSpan) -> dict[str, Any]:
    context, parent = span.context, span.parent
    return {
        "type": "span",
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": _hex(context.trace_id, 32),
        "span_id": _hex(context.span_id, 16),
        "parent_id": _hex(parent.span_id, 16) if parent else None,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [{"trace_id": _hex(link.context.trace_id, 32), "span_id": _hex(link.context.span_id, 16)}
                  for link in span.links],
        "events": [event.name for event in span.events],
    }


def point_record(metric: Any, point: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "metric", "name": metric.name, "unit": metric.unit,
                              "attributes": dict(point.attributes or {})}
    if hasattr(point, "bucket_counts"):  # a histogram
        record.update(count=point.count, sum=point.sum, min=point.min, max=point.max)
    else:
        record["value"] = point.value
    return record
