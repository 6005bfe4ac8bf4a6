"""The Azure Functions entry point (Python v2 programming model). It only builds the app and registers blueprints.

The same file runs in Azure (Functions host + Durable extension) and on one machine under `local/` (`make run`).
"""

import azure.durable_functions as df
import azure.functions as func

from functions import calls, docs, handoff, ops, webchat, whatsapp
from shared.bootstrap import close_services

# Web chat endpoints authenticate with their own signed tokens, so the Functions key layer stays off for them.
app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(webchat.bp)
app.register_functions(whatsapp.bp)
app.register_functions(calls.bp)
app.register_functions(handoff.bp)
app.register_functions(docs.bp)
app.register_functions(ops.bp)


async def shutdown() -> None:
    """Called by the local host on exit so stores close their connections cleanly."""
    await close_services()
