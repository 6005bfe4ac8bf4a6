"""`python -m media_gateway`: serve ACS media WebSockets on GATEWAY_HOST:GATEWAY_PORT until SIGTERM or Ctrl-C.

The server answers /healthz at once; the speech models load in the background right after (GATEWAY_PRELOAD_MODELS),
so the first caller does not wait for them. A call that arrives sooner, or with preloading off, loads them on first
use.

Exit status: 0 after a clean stop, 1 when the port is taken, 2 for a bad setting.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import sys

from aiohttp import web

from media_gateway.engines import KINDS, build_engines
from media_gateway.hooks import build_hooks
from media_gateway.metrics import configure_exporter
from media_gateway.server import Gateway, create_app
from shared import redact
from shared.bootstrap import build_services
from shared.settings import Settings, SettingsError

log = logging.getLogger("media_gateway")


async def serve(settings: Settings, engines_kind: str) -> int:
    try:
        services = await build_services(settings)
    except (SettingsError, RuntimeError) as exc:  # a bad setting, or no token secret where one is required
        print(f"media gateway: {exc}", file=sys.stderr)
        return 2
    engines = build_engines(settings, engines_kind)
    gateway = Gateway(services, engines, hooks=build_hooks(settings.public_url))
    runner = web.AppRunner(create_app(gateway), access_log=None, handle_signals=False)
    await runner.setup()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    warming = asyncio.create_task(engines.warm(), name="warm engines") if settings.gateway_preload_models else None
    try:
        try:
            await web.TCPSite(runner, settings.gateway_host, settings.gateway_port).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                print(f"media gateway: port {settings.gateway_port} is in use: set GATEWAY_PORT=<another port>",
                      file=sys.stderr)
                return 1
            raise
        log.info(
            "media gateway listening on ws://%s:%d/media (public %s/media); engines: %s",
            settings.gateway_host, settings.gateway_port, settings.gateway_public_url, engines.describe(),
        )
        await stopping.wait()
        log.info("media gateway stopping")
        return 0
    finally:
        if warming is not None:
            warming.cancel()
            await asyncio.gather(warming, return_exceptions=True)
        await runner.cleanup()
        await engines.close()
        await services.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m media_gateway", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engines", choices=KINDS, default="auto",
        help="speech engines: auto (azure when SPEECH_ENDPOINT/SPEECH_REGION is set, else offline), or force one; "
        "null (a scripted recogniser and a tone) is for benchmarks",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        settings.uses_azure_speech  # noqa: B018 - validates the SPEECH_* combination now, not on the first call
    except SettingsError as exc:
        print(f"media gateway: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    redact.install()  # a safety net: log records lose phone numbers and tokens a call site forgot to mask
    if exporter := configure_exporter():
        log.info("exporting metrics through OpenTelemetry (%s)", exporter)
    return asyncio.run(serve(settings, args.engines))


if __name__ == "__main__":
    sys.exit(main())
