"""`python -m media_gateway`: serve ACS media WebSockets on GATEWAY_HOST:GATEWAY_PORT until SIGTERM or Ctrl-C.

The server answers /healthz at once; the speech models load in the background right after (GATEWAY_PRELOAD_MODELS),
so the first caller does not wait for them. A call that arrives sooner, or with preloading off, loads them on first
use.

With more than one worker (GATEWAY_WORKERS; 0 is one per core the container may use) this process supervises that
many worker processes on the same port (workers.py); with one, it is the gateway itself. Each gateway process runs
on uvloop: half the CPU per WebSocket message of asyncio's own loop (docs/cost.md, "Media gateway CPU").

Exit status: 0 after a clean stop, 1 when the port is taken, 2 for a bad setting.
"""

from __future__ import annotations

import os

# numpy's BLAS must not start threads of its own: the VAD's matrix products run on the VAD thread, and the other
# cores belong to the other workers. Set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import errno  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from media_gateway.engines import KINDS  # noqa: E402
from media_gateway.workers import WorkerPlace, supervise, worker_count  # noqa: E402
from shared import redact  # noqa: E402
from shared.settings import Settings, SettingsError  # noqa: E402

log = logging.getLogger("media_gateway")


async def serve(settings: Settings, engines_kind: str, place: WorkerPlace | None = None) -> int:
    from aiohttp import web

    from media_gateway.engines import build_engines
    from media_gateway.hooks import build_hooks
    from media_gateway.server import Gateway, create_app, create_worker_app
    from shared.bootstrap import build_services

    try:
        services = await build_services(settings)
    except (SettingsError, RuntimeError) as exc:  # a bad setting, or no token secret where one is required
        print(f"media gateway: {exc}", file=sys.stderr)
        return 2
    engines = build_engines(settings, engines_kind)
    gateway = Gateway(services, engines, hooks=build_hooks(settings.public_url), place=place)
    runner = web.AppRunner(create_app(gateway), access_log=None, handle_signals=False)
    await runner.setup()
    worker_runner = web.AppRunner(create_worker_app(gateway), access_log=None, handle_signals=False) if place else None
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    warming = asyncio.create_task(engines.warm(), name="warm engines") if settings.gateway_preload_models else None
    try:
        try:
            await web.TCPSite(runner, settings.gateway_host, settings.gateway_port, reuse_port=place is not None).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                print(f"media gateway: port {settings.gateway_port} is in use: set GATEWAY_PORT=<another port>",
                      file=sys.stderr)
                return 1
            raise
        if worker_runner is not None and place is not None:
            await worker_runner.setup()
            await web.UnixSite(worker_runner, str(place.socket())).start()
        log.info(
            "media gateway %slistening on ws://%s:%d/media (public %s/media); engines: %s",
            f"worker {place.index} " if place else "", settings.gateway_host, settings.gateway_port,
            settings.gateway_public_url, engines.describe(),
        )
        await stopping.wait()
        log.info("media gateway stopping")
        return 0
    finally:
        if warming is not None:
            warming.cancel()
            await asyncio.gather(warming, return_exceptions=True)
        await runner.cleanup()
        if worker_runner is not None:
            await worker_runner.cleanup()
        await engines.close()
        await services.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m media_gateway", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engines", choices=KINDS, default="auto",
        help="speech engines: auto (azure when SPEECH_ENDPOINT/SPEECH_REGION is set, else offline), or force one; "
        "null (a scripted recogniser and a tone) is for benchmarks",
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the supervisor for its workers
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        settings.uses_azure_speech  # noqa: B018 - validates the SPEECH_* combination now, not on the first call
    except SettingsError as exc:
        print(f"media gateway: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    redact.install()  # a safety net: log records lose phone numbers and tokens a call site forgot to mask
    if args.worker is None and (count := worker_count(settings.gateway_workers)) > 1:
        return supervise(["--engines", args.engines], count)
    place = WorkerPlace.from_env(args.worker, args.workers) if args.worker is not None else None
    from media_gateway.metrics import configure_exporter

    if exporter := configure_exporter():
        log.info("exporting metrics through OpenTelemetry (%s)", exporter)
    import uvloop

    return uvloop.run(serve(settings, args.engines, place))


if __name__ == "__main__":
    sys.exit(main())
