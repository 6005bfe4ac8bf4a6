"""`python -m local.smoke` against the system `make run` starts (`python -m local`, as a process on free ports), and
against one that is not there.

The smoke check is what ops runs after `azd up` (docs/deploy.md); here it runs as a process too, and what is asserted
is what ops would read: one line per check, OK/FAIL/TODO, and the exit code. The model's two outcomes use the
OpenAI-compatible test server (a fake at the network boundary: the real model service cannot run here) behind the
real `openai` SDK in the host.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from local.smoke import EVENT_SUBSCRIPTIONS
from tests.infra.bicep import parse_file
from tests.peers import free_port
from tests.peers.local_host import PROJECT_ROOT, LocalHost

LINE = re.compile(r"^(OK|FAIL|TODO)\s+(\S.*?)\s{2,}(.*)$")


@dataclass
class SmokeRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def checks(self) -> dict[str, tuple[str, str]]:
        """check name -> (status, detail), from the lines ops reads."""
        found = {}
        for line in self.stdout.splitlines():
            if match := LINE.match(line):
                found[match.group(2).strip()] = (match.group(1), match.group(3))
        return found

    def status(self, name: str) -> str:
        return self.checks[name][0]


def smoke_command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "local.smoke", "--url", url, "--timeout", "30", "--wait", "0", *args]


def run_smoke(url: str, *args: str) -> SmokeRun:
    done = subprocess.run(smoke_command(url, *args), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    return SmokeRun(done.returncode, done.stdout, done.stderr)


async def run_smoke_async(url: str, *args: str) -> SmokeRun:
    """For tests whose fake model server runs on this event loop: a blocking run would starve it."""
    process = await asyncio.create_subprocess_exec(*smoke_command(url, *args), cwd=PROJECT_ROOT,
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    return SmokeRun(process.returncode or 0, stdout.decode(), stderr.decode())


@dataclass
class System:
    host: LocalHost
    gateway_url: str


@pytest.fixture(scope="module")
def system(local_host_factory: Callable[..., LocalHost]) -> Iterator[System]:
    """`python -m local` as `make run` starts it (offline policy, ACS emulator, media gateway), on free ports, once
    all of it is up: the host answers first, the media gateway it starts a moment later."""
    gateway_port = free_port()
    host = local_host_factory(GATEWAY_PORT=str(gateway_port))
    wait_for(f"http://127.0.0.1:{gateway_port}/healthz")
    yield System(host, f"ws://127.0.0.1:{gateway_port}")
    host.stop()


def wait_for(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {seconds:.0f} s", pytrace=False)


def test_the_smoke_check_passes_against_the_system_make_run_starts(system: System) -> None:
    run = run_smoke(system.host.url, "--gateway", system.gateway_url, "--key", "any-key-the-local-host-accepts")
    assert run.returncode == 0, run.stdout + run.stderr
    for check in ("function app", "function key", "web chat", "model", "gateway health", "gateway socket"):
        assert run.status(check) == "OK", f"{check}: {run.checks.get(check)}\n{run.stdout}"
    assert all(status != "FAIL" for status, _ in run.checks.values()) and "Traceback" not in run.stderr
    # What it cannot see from outside, and what needs a person, is said plainly with what to do.
    assert run.status("event grid") == "TODO" and "az eventgrid system-topic event-subscription list" in run.stdout
    for person in ("phone number", "whatsapp channel", "whatsapp templates"):
        assert run.status(person) == "TODO"
    assert "switchboard_follow_up" in run.checks["whatsapp templates"][1]  # the reference scenario's templates
    assert run.stdout.rstrip().endswith("Result: 6 OK, 0 FAIL, 6 TODO")


def test_the_smoke_check_fails_clearly_against_a_url_where_nothing_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = run_smoke(url, "--gateway", f"ws://127.0.0.1:{free_port()}")
    assert run.returncode == 1
    status, detail = run.checks["function app"]
    assert status == "FAIL" and f"cannot reach {url}/api/openapi.json" in detail
    for check in ("web chat", "model", "gateway health", "gateway socket"):
        assert run.status(check) == "FAIL", check
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout


def test_the_smoke_check_fails_when_the_url_is_not_the_function_app(system: System) -> None:
    # The gateway's address given as the app's: it answers, but not with the API document.
    run = run_smoke(system.gateway_url.replace("ws://", "http://"))
    assert run.returncode == 1
    status, detail = run.checks["function app"]
    assert status == "FAIL" and "not the API document" in detail and "answered 404" in detail


def test_without_a_gateway_or_key_those_checks_are_todo_and_do_not_fail_the_run(system: System) -> None:
    run = run_smoke(system.host.url)
    assert run.returncode == 0, run.stdout
    assert run.status("media gateway") == "TODO" and "GATEWAY_PUBLIC_URL" in run.checks["media gateway"][1]
    assert run.status("function key") == "TODO" and "az functionapp keys list" in run.checks["function key"][1]


@pytest.fixture
async def llm_host(local_host_factory, openai_server):  # type: ignore[no-untyped-def]
    host = local_host_factory(SWITCHBOARD_POLICY="openai", OPENAI_BASE_URL=openai_server.base_url, OPENAI_API_KEY="k")
    yield host
    host.stop()


async def test_the_model_check_passes_when_the_model_answers_the_turn(llm_host, openai_server) -> None:
    openai_server.reply_text("Hello! I can help with billing, outages and moving service.")
    run = await run_smoke_async(llm_host.url)
    assert run.status("model") == "OK", run.stdout
    assert "Hello! I can help" in run.checks["web chat"][1]
    assert len(openai_server.requests) == 1, "the smoke turn must reach the model"
    assert run.returncode == 0, run.stdout


async def test_the_model_check_fails_when_the_model_endpoint_fails(llm_host, openai_server) -> None:
    openai_server.fail(500, times=10)
    run = await run_smoke_async(llm_host.url)
    assert run.returncode == 1, run.stdout
    status, detail = run.checks["model"]
    assert status == "FAIL" and "fallback line" in detail and "AZURE_OPENAI_DEPLOYMENT" in detail
    assert run.status("web chat") == "OK", "the turn itself succeeded: only the model failed"


def test_the_subscriptions_it_tells_ops_to_look_for_are_the_ones_the_hook_makes() -> None:
    events = parse_file(PROJECT_ROOT / "infra" / "modules" / "events.bicep")
    made = {r.obj.items["name"].source.strip("'") for r in events.resources_of(
        "Microsoft.EventGrid/systemTopics/eventSubscriptions")}
    assert set(EVENT_SUBSCRIPTIONS) == made
