"""The Azure Functions entry point (Python v2 programming model). It only builds the app and registers blueprints.

The same file runs in Azure (Functions host + Durable extension) and on one machine under `local/` (`make run`).
"""

import azure.durable_functions as df
import azure.functions as func

from functions import callbacks, calls, desk, docs, handoff, notifications, ops, sms, synthesis, webchat, whatsapp
from shared import redact
from shared.bootstrap import close_services
from shared.telemetry import export as telemetry_export

redact.install()  # a safety net: log records lose phone numbers and tokens a call site forgot to mask

# Traces and metrics go where settings say (App Insights, OTLP, console); with none, the SDK is not even imported.
telemetry_export.configure("switchboard-functions")

# Web chat endpoints authenticate with their own signed tokens and the desk with the platform's sign-in, so the
# Functions key layer stays off for them.
app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(webchat.bp)
app.register_functions(whatsapp.bp)
app.register_functions(sms.bp)
app.register_functions(calls.bp)
app.register_functions(handoff.bp)
app.register_functions(callbacks.bp)
app.register_functions(synthesis.bp)
app.register_functions(notifications.bp)
app.register_functions(docs.bp)
app.register_functions(ops.bp)
app.register_functions(desk.bp)


async def shutdown() -> None:
    """Called by the local host on exit so stores and HTTP clients close their connections cleanly."""
    await close_services()
    # The Durable client keeps one aiohttp session for the process and has no public way to close it; without this,
    # every exit after a handoff reports an unclosed client session.
    from azure.durable_functions.models.utils import http_utils

    close = getattr(http_utils, "_close_session", None)
    if close is not None:
        await close()
