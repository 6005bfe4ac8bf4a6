"""What azd does to an environment and to main.parameters.json, reduced to what the infra tests need.

No azd runs here. The behaviour below is azd's, read from its source (Azure/azure-dev, cli/azd, read 2026-12):
  * provision: `${VAR}` and `${VAR=default}` in main.parameters.json are filled from the environment (an unset
    variable takes the default), and `$(secretOrRandomPassword <vault> <secret>)` reads the secret, or makes a random
    password when the vault name is missing (pkg/cmdsubst/secretOrRandomPassword.go);
  * before every provision, for each `host: containerapp` service, SERVICE_<NAME>_RESOURCE_EXISTS is set to whether
    the app exists (pkg/project/service_target_containerapp.go, addPreProvisionChecks);
  * after a provision, every output of main.bicep is written to the environment;
  * a deploy of a container service writes SERVICE_<NAME>_IMAGE_NAME;
  * `azd down` deletes every output of the template from the environment, and nothing else
    (pkg/infra/provisioning/manager.go, Destroy).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.infra.bicep import parse_file

INFRA = Path(__file__).resolve().parents[2] / "infra"

#: Values the operator sets with `azd env set` that `azd down` clears, because main.bicep also outputs them under
#: the same name. WHATSAPP_CHANNEL_ID and ACS_SMS_FROM name things `down` deletes with the ACS resource (the channel
#: and the number); SWITCHBOARD_SCENARIO is a setting the app reads, so it is an output as well. docs/deploy.md says
#: to set them again before `azd up`.
CHOICES_CLEARED_BY_DOWN = {"SWITCHBOARD_SCENARIO", "WHATSAPP_CHANNEL_ID", "ACS_SMS_FROM"}


def outputs() -> set[str]:
    return set(parse_file(INFRA / "main.bicep").outputs)


def fresh() -> dict[str, str]:
    """A new environment: what `azd env new` and azd's own pre-provision check put there."""
    return {
        "AZURE_ENV_NAME": "switchboard-prod",
        "AZURE_LOCATION": "eastus",
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_PRINCIPAL_ID": "00000000-0000-0000-0000-000000000002",
        "SERVICE_GATEWAY_RESOURCE_EXISTS": "false",  # no container app yet
    }


def after_up(env: dict[str, str]) -> dict[str, str]:
    """After `azd up`: the outputs, the deployed image, and what the postdeploy hook of old left behind."""
    written = {name: f"value-of-{name.lower()}" for name in outputs()}
    written["AZURE_KEY_VAULT_NAME"] = "kv-abc123"
    return {
        **env,
        **written,
        "SERVICE_GATEWAY_RESOURCE_EXISTS": "true",
        "SERVICE_GATEWAY_IMAGE_NAME": "crabc123.azurecr.io/switchboard/gateway-switchboard-prod:azd-deploy-1",
        "SWITCHBOARD_EVENT_SUBSCRIPTIONS": "true",
    }


def after_down(env: dict[str, str]) -> dict[str, str]:
    """After `azd down`, as the next `azd up` sees it: outputs gone, the container app found missing."""
    kept = {name: value for name, value in env.items() if name not in outputs()}
    return {**kept, "SERVICE_GATEWAY_RESOURCE_EXISTS": "false"}


_VARIABLE = re.compile(r"\$\{(\w+)(?:=([^}]*))?\}")
_COMMAND = re.compile(r"^\$\((\w+)((?:\s+[^\s)]+)*)\s*\)$")


def resolve_parameters(env: dict[str, str]) -> dict[str, object]:
    """main.parameters.json as azd would pass it to ARM for this environment: parameter -> value.

    A command substitution resolves to ("secretOrRandomPassword", "vault", name) or (..., "random")."""
    raw = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    resolved: dict[str, object] = {}
    for name, body in raw.items():
        value = _VARIABLE.sub(lambda m: env.get(m.group(1), m.group(2) or ""), body["value"])
        if command := _COMMAND.match(value):
            args = command.group(2).split()
            assert command.group(1) == "secretOrRandomPassword", value
            resolved[name] = (command.group(1), "vault", args[0]) if len(args) == 2 else (command.group(1), "random")
        else:
            resolved[name] = value
    return resolved
