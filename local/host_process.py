"""The local Functions host as a real process: `python -m local` on a free port, as `make run` starts it, for whatever
needs a host of its own (the tests' fixtures in tests/peers/local_host.py, the evals' live journeys in evals/live.py).

A host started here sees only what its caller gives it: it inherits the environment (PATH and the like) minus every
Switchboard setting, so a developer's shell (OPENAI_BASE_URL, REDIS_URL, COSMOS_ENDPOINT, ...) cannot change what it
runs against, and it runs with SWITCHBOARD_SKIP_LOCAL_SETTINGS=1, so a local.settings.json in the repo root cannot
either (the host reads that file from the project root whatever its working directory).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from local.project import SKIP_LOCAL_SETTINGS
from shared.settings import SETTINGS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0  # importing the app and its SDKs is the slow part
STOP_TIMEOUT = 15.0


class LocalHostFailed(RuntimeError):
    """The host process exited or never answered /healthz; the message carries its stderr."""


class LocalHost:
    """One `python -m local` process. Its stdout and stderr go to files, so a chatty host never blocks on a pipe."""

    def __init__(self, env: dict[str, str], workdir: Path, args: tuple[str, ...] = ()) -> None:
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        # The ACS emulator `python -m local` starts beside the host (none when ACS_ENDPOINT points elsewhere).
        self.acs_url = f"http://127.0.0.1:{env['ACS_EMULATOR_PORT']}" if not env.get("ACS_ENDPOINT") else None
        self._stdout_path, self._stderr_path = workdir / "host.stdout.log", workdir / "host.stderr.log"
        self._stdout = open(self._stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self._stderr = open(self._stderr_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=self._stdout,
            stderr=self._stderr,
        )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalHostFailed(f"python -m local exited with {self.process.returncode}:\n{self.stderr()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise LocalHostFailed(f"python -m local did not answer {self.url}/healthz in {timeout:.0f}s:\n{self.stderr()}")

    def stderr(self) -> str:
        return self._stderr_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        return self._stdout_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int | None:
        """SIGTERM (the host drains and runs the app's shutdown()), then a kill if it hangs. Returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM on POSIX
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self._stdout, self._stderr):
            if not stream.closed:
                stream.close()
        return self.process.returncode


def host_environ(env: Mapping[str, str]) -> dict[str, str]:
    """A host's environment: this process's minus every Switchboard setting, local.settings.json off, then `env`."""
    inherited = {key: value for key, value in os.environ.items() if key not in SETTINGS}
    return {**inherited, SKIP_LOCAL_SETTINGS: "1", **env}


def start_local_host(workdir: Path, args: tuple[str, ...] = (), **env: str) -> LocalHost:
    """Start `python -m local` offline on a free port with its own data dir under `workdir`; wait until it serves.

    `env` overrides or adds settings (e.g. REDIS_URL=...); nothing else comes from the developer's shell or
    local.settings.json (see the module docstring). Raises LocalHostFailed with the host's stderr.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    defaults = {
        "PORT": str(free_port()),
        "ACS_EMULATOR_PORT": str(free_port()),  # never 7072: a developer's `make run` may hold it
        "GATEWAY_PORT": str(free_port()),  # the media gateway `python -m local` starts; never 8765 either
        "GATEWAY_PRELOAD_MODELS": "false",  # a test host's gateway loads speech models only if a test calls it
        "SWITCHBOARD_DATA_DIR": str(workdir / "data"),
        "SWITCHBOARD_POLICY": "offline",
        "WEBCHAT_SESSIONS_PER_ADDRESS": "0",  # every test is one address starting sessions by the hundred
        "PYTHONUNBUFFERED": "1",
    }
    host = LocalHost(host_environ({**defaults, **env}), workdir, args)
    try:
        host.wait_ready()
    except LocalHostFailed:
        host.stop()
        raise
    return host


def free_port() -> int:
    """A loopback port free right now (the OS picks it; another process could still take it before it is bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
