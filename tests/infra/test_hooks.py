"""The postdeploy hook (infra/hooks/postdeploy.sh) run as azd runs it: a shell script with the environment's values.

The Azure CLI cannot reach Azure here, so `az`, `curl` and `azd` on the hook's PATH are stand-ins at that boundary:
small scripts that log how they were called, answer `az functionapp keys list` with a key from the Nth call on, and
succeed or fail `az deployment group create` as the test says. The hook's own logic (what it waits for, what it
deploys with which parameters, what it remembers, how it fails) runs for real. postdeploy.ps1 cannot run without
PowerShell, so it is held to the same steps by reading it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.infra.azd_env import after_down, after_up, fresh
from tests.infra.bicep import parse_file
from tests.infra.test_templates import INFRA, main

HOOK = INFRA / "hooks" / "postdeploy.sh"
WINDOWS_HOOK = INFRA / "hooks" / "postdeploy.ps1"
EVENTS = INFRA / "modules" / "events.bicep"
#: The main.bicep outputs the hook reads.
READS = ("AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME", "AZURE_EVENTGRID_SYSTEM_TOPIC",
         "AZURE_MANAGED_IDENTITY_NAME", "AZURE_STORAGE_ACCOUNT_NAME")

FAKE_AZ = """#!/bin/sh
echo "az $*" >> "$STANDIN_LOG"
case "$1 $2 $3" in
  "functionapp keys list")
    calls=$(cat "$STANDIN_DIR/key-calls" 2>/dev/null || echo 0); calls=$((calls + 1))
    echo "$calls" > "$STANDIN_DIR/key-calls"
    if [ "$calls" -ge "$KEY_FROM_CALL" ]; then echo "eventgrid-key-value"; fi ;;
  "deployment group create") exit "$DEPLOY_EXIT" ;;
  *) echo "unexpected: az $*" >&2; exit 2 ;;
esac
"""
FAKE_LOGGER = """#!/bin/sh
echo "{name} $*" >> "$STANDIN_LOG"
exit {code}
"""


class HookRun:
    def __init__(self, result: subprocess.CompletedProcess[str], log: Path) -> None:
        self.returncode, self.stdout, self.stderr = result.returncode, result.stdout, result.stderr
        self.calls = log.read_text().splitlines() if log.exists() else []

    def called(self, prefix: str) -> list[str]:
        return [c for c in self.calls if c.startswith(prefix)]


@pytest.fixture
def run_hook(tmp_path: Path):  # type: ignore[no-untyped-def]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"az": FAKE_AZ, "curl": FAKE_LOGGER.format(name="curl", code=0),
                       "azd": FAKE_LOGGER.format(name="azd", code=1)}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)

    def run(env_file: dict[str, str], *, key_from_call: int = 1, deploy_exit: int = 0, tries: int = 5) -> HookRun:
        # The azd environment as a .env file, read back the way azd hands it to a hook: as environment variables.
        dotenv = tmp_path / ".env"
        dotenv.write_text("".join(f'{k}="{v}"\n' for k, v in env_file.items()))
        values = dict(re.findall(r'^(\w+)="(.*)"$', dotenv.read_text(), re.M))
        log = tmp_path / "calls.log"
        log.unlink(missing_ok=True)
        (tmp_path / "key-calls").unlink(missing_ok=True)
        env = {
            **values,
            "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "STANDIN_LOG": str(log), "STANDIN_DIR": str(tmp_path),
            "KEY_FROM_CALL": str(key_from_call), "DEPLOY_EXIT": str(deploy_exit),
            "SWITCHBOARD_KEY_WAIT_TRIES": str(tries), "SWITCHBOARD_KEY_WAIT_SECONDS": "0",
        }
        result = subprocess.run(["sh", str(HOOK)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        return HookRun(result, log)

    return run


def test_after_a_deploy_the_hook_waits_for_the_key_then_deploys_the_subscriptions_with_az(run_hook) -> None:
    env = after_up(fresh())
    run = run_hook(env, key_from_call=3)
    assert run.returncode == 0, run.stderr
    assert len(run.called("az functionapp keys list")) == 3
    assert len(run.called("curl")) == 2, "each miss wakes the host, which then makes the key"
    (deploy,) = run.called("az deployment group create")
    assert f"-g {env['AZURE_RESOURCE_GROUP']} " in deploy and f"--template-file {EVENTS}" in deploy
    passed = dict(re.findall(r"(\w+)=(\S+)", deploy))
    assert passed == {
        "systemTopicName": env["AZURE_EVENTGRID_SYSTEM_TOPIC"], "functionAppName": env["AZURE_FUNCTION_APP_NAME"],
        "identityName": env["AZURE_MANAGED_IDENTITY_NAME"], "storageAccountName": env["AZURE_STORAGE_ACCOUNT_NAME"],
    }
    # Every parameter events.bicep needs, and none it does not know.
    events = parse_file(EVENTS).params
    assert {n for n, p in events.items() if p.default is None} <= set(passed) <= set(events)
    assert not run.called("azd"), "no nested azd: nothing provisioned again, nothing written to the environment"
    assert "incoming-call, whatsapp-events, sms-events" in run.stdout


def test_an_environment_that_went_through_azd_down_gets_its_subscriptions_back(run_hook) -> None:
    # After `down` and the next provision: the old hook's SWITCHBOARD_EVENT_SUBSCRIPTIONS=true is still there, and
    # made the old hook skip the subscriptions the new resources had never had.
    env = {**after_up(after_down(after_up(fresh())))}
    assert env["SWITCHBOARD_EVENT_SUBSCRIPTIONS"] == "true"
    run = run_hook(env)
    assert run.returncode == 0, run.stderr
    assert len(run.called("az deployment group create")) == 1


def test_the_hook_fails_clearly_when_the_key_never_appears(run_hook) -> None:
    run = run_hook(after_up(fresh()), key_from_call=99, tries=2)
    assert run.returncode == 1
    assert "No eventgrid_extension key" in run.stderr and "azd hooks run postdeploy" in run.stderr
    assert not run.called("az deployment group create")


def test_the_hook_fails_clearly_when_the_subscriptions_cannot_be_deployed(run_hook) -> None:
    run = run_hook(after_up(fresh()), deploy_exit=1)
    assert run.returncode == 1
    assert "Deploying the Event Grid subscriptions failed" in run.stderr and "azd hooks run postdeploy" in run.stderr


def test_the_hook_names_the_output_it_is_missing(run_hook) -> None:
    env = after_up(fresh())
    del env["AZURE_MANAGED_IDENTITY_NAME"]  # e.g. an environment provisioned by an older main.bicep
    run = run_hook(env)
    assert run.returncode == 1
    assert "AZURE_MANAGED_IDENTITY_NAME is not in the azd environment" in run.stderr
    assert not run.calls


def test_what_the_hook_reads_are_outputs_of_main_bicep() -> None:
    assert set(READS) <= set(main().template.outputs)
    text = HOOK.read_text()
    assert all(name in text for name in READS)


def test_the_windows_hook_takes_the_same_steps() -> None:
    posix, windows = HOOK.read_text(), WINDOWS_HOOK.read_text()
    for needle in (*READS, "systemKeys.eventgrid_extension", "az deployment group create", "--name switchboard-events",
                   "modules/events.bicep", "systemTopicName=", "functionAppName=", "identityName=",
                   "storageAccountName=", "SWITCHBOARD_KEY_WAIT_TRIES", "SWITCHBOARD_KEY_WAIT_SECONDS",
                   "azd hooks run postdeploy"):
        assert needle in posix and needle in windows, needle
    for text in (posix, windows):
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        # azd only inside the messages that tell a person what to run, never as a command the hook runs.
        assert not re.search(r"(^|[;&|(`])\s*azd\s", code, re.M), "a hook must not run azd or write the env"
