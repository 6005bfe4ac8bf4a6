"""`azd down` then `azd up` in the same environment provisions what a first `azd up` would (issue 19).

No azd runs here: tests/infra/azd_env.py does what azd does to an environment (a deploy, `azd down`, the check
before a provision) and to main.parameters.json, from azd's source. The environment after `azd up` also carries
SWITCHBOARD_EVENT_SUBSCRIPTIONS=true, which the old postdeploy hook left behind and which broke the next `azd up`.
"""

from __future__ import annotations

import re

from tests.infra.azd_env import CHOICES_CLEARED_BY_DOWN, after_down, after_up, fresh, resolve_parameters
from tests.infra.test_templates import ROOT, main

DEPLOY_DOC = ROOT / "docs" / "deploy.md"


def test_a_provision_after_azd_down_resolves_the_same_parameters_as_a_first_one() -> None:
    first = resolve_parameters(fresh())
    again = resolve_parameters(after_down(after_up(fresh())))
    assert again == first
    # What made the old templates fail after `down`: neither a gateway image nor an "already subscribed" flag survives.
    assert first["gatewayExists"] == "false"
    assert first["tokenSecret"] == ("secretOrRandomPassword", "random"), "no vault to read before the first provision"


def test_a_provision_while_deployed_keeps_the_running_gateway_image_and_the_token_secret() -> None:
    deployed = after_up(fresh())
    resolved = resolve_parameters({**deployed, "SERVICE_GATEWAY_RESOURCE_EXISTS": "true"})
    assert resolved["gatewayExists"] == "true"  # gateway-image.bicep then reads the image from the app
    assert resolved["tokenSecret"] == ("secretOrRandomPassword", "vault", deployed["AZURE_KEY_VAULT_NAME"])


def test_no_parameter_reads_what_a_deploy_or_a_hook_writes() -> None:
    written = set(after_up(fresh())) - set(fresh()) - set(main().template.outputs)
    assert written == {"SERVICE_GATEWAY_IMAGE_NAME", "SWITCHBOARD_EVENT_SUBSCRIPTIONS"}
    read = set(re.findall(r"\$\{(\w+)", (ROOT / "infra" / "main.parameters.json").read_text()))
    assert not read & written


def test_the_operators_choices_survive_down_except_those_docs_deploy_md_names() -> None:
    choices = {"AZURE_OPENAI_MODEL": "gpt-5.4-mini", "AZURE_OPENAI_MODEL_VERSION": "2026-03-17",
               "SWITCHBOARD_REDIS_SKU": "Balanced_B0", "SWITCHBOARD_SCENARIO": "telco", "WHATSAPP_CHANNEL_ID": "c1"}
    resolved = resolve_parameters(after_down(after_up({**fresh(), **choices})))
    assert (resolved["chatModelName"], resolved["chatModelVersion"], resolved["redisSku"]) == (
        "gpt-5.4-mini", "2026-03-17", "Balanced_B0")
    # Choices read from a variable that is also an output are cleared by `down`: only these, each said in the doc.
    assert resolved["scenario"] == "utilities" and resolved["whatsappChannelId"] == ""
    read = set(re.findall(r"\$\{(\w+)", (ROOT / "infra" / "main.parameters.json").read_text()))
    assert read & set(main().template.outputs) - {"AZURE_KEY_VAULT_NAME"} == CHOICES_CLEARED_BY_DOWN
    redeploy = DEPLOY_DOC.read_text().split("## Deploying again after `azd down`", 1)
    assert len(redeploy) == 2, "docs/deploy.md must walk a re-deploy after azd down"
    for variable in CHOICES_CLEARED_BY_DOWN:
        section = redeploy[1].split("\n## ", 1)[0]
        assert f"`{variable}`" in section, f"the re-deploy section must say {variable} is cleared"
