"""`python -m local` (what `make run` starts): the whole system on one machine, offline unless settings say otherwise.

The local processes are a list of services, started in order and stopped in reverse, so later pieces (the ACS
emulator on ACS_EMULATOR_PORT, the media gateway on GATEWAY_PORT) join by adding one entry to `services()`.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from typing import Protocol

from local import PortInUse
from local.acs.calls import CallsApi
from local.acs.messages import CHANNEL_ID, MessagesApi
from local.acs.server import AcsEmulator, EmulatorService
from local.acs.sms import SMS_NUMBER, SmsApi
from local.auth import LocalSignIn, sign_in_link
from local.durable import DATABASE_NAME, DurableExtension, read_overridable_states, read_task_hub
from local.gateway import GatewayFailed, GatewayService
from local.host import Host
from local.project import load_app, load_local_settings, read_route_prefix
from local.summary import LiveSummary
from shared.principal import AUTH_ENABLED
from shared.settings import PROJECT_ROOT, Settings, SettingsError
from shared.telemetry import export as telemetry_export

log = logging.getLogger("local")

#: The people the banner's sign-in links are for: one at the desk, one supervising it.
DEMO_AGENT, DEMO_SUPERVISOR = "Dana Reyes", "Sam Okafor"


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def banner(self) -> list[str]:
        """Lines for the startup banner: what a person opens or points things at."""
        ...


class FunctionsHost:
    """The function app from function_app.py, served like the Functions host would."""

    name = "functions host"

    def __init__(self, settings: Settings, app_spec: str, access_log: bool, *, dev_sign_in: bool = True) -> None:
        self._settings = settings
        self._app_spec = app_spec
        self._access_log = access_log
        self._dev_sign_in = dev_sign_in
        self._host: Host | None = None

    async def start(self) -> None:
        # The host stands in for App Service authentication (local/auth.py), so the app may trust the principal
        # headers it passes on, as it does in Azure where the platform sets this.
        os.environ[AUTH_ENABLED] = "True"
        # Import the app inside the running loop: anything it builds at import time belongs to this loop.
        app, shutdown = load_app(self._app_spec, PROJECT_ROOT)
        durable = DurableExtension(self._settings.data_dir / DATABASE_NAME, task_hub=read_task_hub(PROJECT_ROOT),
                                   overridable=read_overridable_states(PROJECT_ROOT))
        route_prefix = read_route_prefix(PROJECT_ROOT)
        desk = "/" + "/".join(filter(None, (route_prefix, "desk")))
        sign_in = LocalSignIn(dev_sign_in=self._dev_sign_in, desk_path=desk)
        self._host = Host(
            app,
            route_prefix=route_prefix,
            extensions=[durable, sign_in],
            on_shutdown=shutdown,
            function_directory=PROJECT_ROOT,
            function_key=self._settings.local_function_key,  # empty: no keys checked, as Core Tools
        )
        try:
            await self._host.start(self._settings.port, access_log=self._access_log)
        except OSError as exc:
            await self._host.stop()  # still run the app's shutdown(): its import may have opened connections
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {self._settings.port} is in use: set PORT=<another port>") from None
            raise

    async def stop(self) -> None:
        if self._host is not None:
            await self._host.stop()

    def banner(self) -> list[str]:
        assert self._host is not None
        api = f"{self._host.url}/{self._host.route_prefix}".rstrip("/")
        lines = [
            f"web chat   {api}/webchat",
            f"desk       {api}/desk",
        ]
        if self._dev_sign_in:
            lines += [
                f"sign in    {self._host.url}{sign_in_link(DEMO_AGENT)}  (an agent at the desk)",
                f"           {self._host.url}{sign_in_link(DEMO_SUPERVISOR, supervisor=True)}  (a supervisor)",
            ]
        return lines + [
            f"API doc    {api}/openapi.json",
            f"health     {self._host.url}/healthz",
        ]


def services(settings: Settings, args: argparse.Namespace) -> list[Service]:
    """Everything `make run` starts, in start order."""
    running: list[Service] = []
    if not settings.acs_endpoint:  # a configured ACS resource replaces the emulator
        running.append(acs_emulator(settings))
    running.append(FunctionsHost(settings, args.app, args.access_log, dev_sign_in=not args.no_dev_sign_in))
    running.append(GatewayService(settings))
    return running


def acs_emulator(settings: Settings) -> EmulatorService:
    """The local ACS emulator, and the app pointed at it.

    The app reads its settings when it first needs them, after this runs, so the emulator's endpoint, key and
    WhatsApp channel and SMS number become the app's ACS_ENDPOINT, ACS_ACCESS_KEY, WHATSAPP_CHANNEL_ID and
    ACS_SMS_FROM. A key, channel id or number the user set is the emulator's too, so requests they sign themselves
    are accepted.
    """
    channel_id = settings.whatsapp_channel_id or CHANNEL_ID
    sms_number = settings.acs_sms_from or SMS_NUMBER
    modules = [MessagesApi(channel_id), SmsApi(sms_number), CallsApi()]
    emulator = AcsEmulator(functions_url=f"http://127.0.0.1:{settings.port}", modules=modules)
    if settings.acs_access_key:
        emulator.access_key = settings.acs_access_key
    service = EmulatorService(emulator, settings.acs_emulator_port)
    os.environ.update(ACS_ENDPOINT=service.url, ACS_ACCESS_KEY=emulator.access_key, WHATSAPP_CHANNEL_ID=channel_id,
                      ACS_SMS_FROM=sms_number)
    return service


async def serve(running: list[Service]) -> None:
    """Start each service, print the banner, wait for Ctrl-C or SIGTERM, stop them in reverse."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stopping.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C arrives as KeyboardInterrupt instead
            pass
    started: list[Service] = []
    try:
        for service in running:
            await service.start()
            started.append(service)
        lines = [line for service in started for line in service.banner()]
        print("Switchboard is running.\n  " + "\n  ".join(lines) + "\nPress Ctrl-C to stop.", flush=True)
        await stopping.wait()
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping the %s failed", service.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the function app")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--no-dev-sign-in", action="store_true",
                        help="no /.auth/login/dev: nobody can sign in at the desk (it signs in anyone on this machine)")
    args = parser.parse_args(argv)

    try:
        load_local_settings(PROJECT_ROOT)
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    running = services(settings, args)
    # Before the app loads: its metrics feed the live summary, and its spans go where SWITCHBOARD_TELEMETRY says.
    summary = LiveSummary(settings.summary_seconds, f"http://127.0.0.1:{settings.gateway_port}/stats")
    readers = [summary.reader] if settings.summary_seconds > 0 else []
    if exporters := telemetry_export.configure("switchboard-functions", metric_readers=readers):
        log.info("exporting telemetry to %s", ", ".join(exporters))
    running.append(summary)

    try:
        asyncio.run(serve(running))
    except (PortInUse, GatewayFailed) as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 1
    except SettingsError as exc:  # raised while importing the app
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # only where signal handlers are unavailable
        pass
    finally:
        telemetry_export.shutdown()  # the last spans and metric points, written before we say goodbye
    print("Switchboard stopped. Goodbye.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
