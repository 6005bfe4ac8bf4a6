"""Where traces and metrics go, chosen from settings; the OpenTelemetry SDK is imported only when something is set.

- `APPLICATIONINSIGHTS_CONNECTION_STRING`: Application Insights, through azure-monitor-opentelemetry (which also
  traces the Azure SDKs' calls). Logs stay with the platform (the Functions host and Container Apps already ship
  them), so the distro's log exporter is off unless OTEL_LOGS_EXPORTER says otherwise.
- `OTEL_EXPORTER_OTLP_ENDPOINT`: any OTLP/HTTP collector (the standard OTEL_EXPORTER_OTLP_* variables apply).
- `SWITCHBOARD_TELEMETRY`: `console` (one JSON line per span and per metric point, on stderr) or a file path (the
  same lines appended), for a person or a test on one machine.

Several can be set at once. With none, no SDK is imported and recording stays a no-op, unless the caller brings its
own metric readers (the local host's live summary).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Sequence


log = logging.getLogger(__name__)

#: How often file and console exporters write metric points, unless OTEL_METRIC_EXPORT_INTERVAL (ms) says otherwise.
LOCAL_EXPORT_INTERVAL_MS = 10_000

_configured: list[str] | None = None


def _setting(environ: Mapping[str, str], key: str) -> str:
    # Read as the process starts, before the app's settings are built (and without loading the settings model):
    # every telemetry setting defaults to empty, meaning "no exporter" (tests/shared/test_settings.py holds that).
    return environ.get(key, "").strip()


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether any exporter is configured (cheap: reads settings only)."""
    env = os.environ if environ is None else environ
    return any(_setting(env, key) for key in (
        "APPLICATIONINSIGHTS_CONNECTION_STRING", "OTEL_EXPORTER_OTLP_ENDPOINT", "SWITCHBOARD_TELEMETRY"))


def configure(
    service_name: str, *, metric_readers: Sequence[Any] = (), environ: Mapping[str, str] | None = None
) -> list[str]:
    """Install the SDK with the configured exporters (once per process); returns their names, [] when none."""
    global _configured
    if _configured is not None:
        return _configured
    env = os.environ if environ is None else environ
    if not wanted(env) and not metric_readers:
        _configured = []
        return _configured

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    # OTEL_SERVICE_NAME wins when set (infra/ names the gateway's container that way).
    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {"service.name": service_name})
    processors: list[Any] = []
    readers: list[Any] = list(metric_readers)
    names: list[str] = []

    if local := _setting(env, "SWITCHBOARD_TELEMETRY"):
        from shared.telemetry.jsonlines import JsonMetricExporter, JsonSpanExporter, Sink

        sink = Sink(None if local == "console" else local, service_name)
        interval = float(env.get("OTEL_METRIC_EXPORT_INTERVAL") or LOCAL_EXPORT_INTERVAL_MS)
        processors.append(SimpleSpanProcessor(JsonSpanExporter(sink)))  # written as each span ends
        readers.append(PeriodicExportingMetricReader(JsonMetricExporter(sink), export_interval_millis=interval))
        names.append("console" if local == "console" else f"file {local}")

    if _setting(env, "OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP/HTTP exporter is not installed")
        else:
            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
            names.append("otlp")

    if connection_string := _setting(env, "APPLICATIONINSIGHTS_CONNECTION_STRING"):
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
        except ImportError:
            log.warning("APPLICATIONINSIGHTS_CONNECTION_STRING is set but azure-monitor-opentelemetry is not installed")
        else:
            # The distro builds and installs the providers; ours ride along as extra processors and readers. Logs
            # stay with the platform unless OTEL_LOGS_EXPORTER asks for them (the distro reads only that variable:
            # its disable_logging argument is overwritten by the variable's default).
            os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
            # Sample by trace id, not by rate: every process (function app, activities, gateway) then keeps or
            # drops a customer's journey whole. OTEL_TRACES_SAMPLER_ARG=0.1 keeps one journey in ten.
            if "OTEL_TRACES_SAMPLER" not in os.environ:
                os.environ["OTEL_TRACES_SAMPLER"] = "microsoft.fixed_percentage"
                os.environ.setdefault("OTEL_TRACES_SAMPLER_ARG", "1.0")
            configure_azure_monitor(
                connection_string=connection_string, resource=resource, span_processors=processors,
                metric_readers=readers, enable_live_metrics=False,
            )
            _configured = ["azure-monitor", *names]
            return _configured

    if processors:
        tracer_provider = TracerProvider(resource=resource)
        for processor in processors:
            tracer_provider.add_span_processor(processor)
        trace.set_tracer_provider(tracer_provider)
    if readers:
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    _configured = names
    return _configured


def shutdown() -> None:
    """Flush what is buffered and stop the exporters (the SDK also does this at interpreter exit)."""
    from opentelemetry import metrics, trace

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        if hasattr(provider, "shutdown"):
            try:
                provider.shutdown()
            except Exception:  # exporting is best effort; exiting cleanly matters more
                log.exception("telemetry shutdown failed")
