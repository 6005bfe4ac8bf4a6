"""What would break the first `azd up` on a real subscription (issue 19), read from the Bicep with tests/infra/bicep.py.

Each test is one thing Azure refuses or gets wrong that the project's own emulators never see: a property Flex
Consumption rejects, a model new subscriptions cannot deploy, a gateway revision nobody can reach, a Redis name the
API refuses, a Key Vault read that races its role assignment. docs/deploy.md says where each fact was checked.
"""

from __future__ import annotations

import json
import re

from shared.settings import SETTINGS
from tests.infra.bicep import Arr, Call, Obj, Ref, Ternary, walk
from tests.infra.test_templates import INFRA, ROOT, literal, main, module, only

DEPLOY_DOC = ROOT / "docs" / "deploy.md"


def parameters() -> dict[str, str]:
    """main.parameters.json: parameter -> the azd expression it reads."""
    raw = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    return {name: body["value"] for name, body in raw.items()}


def azd_default(expression: str) -> tuple[str, str]:
    """(variable, default) of a `${VAR=default}` expression."""
    match = re.fullmatch(r"\$\{(\w+)=([^}]*)\}", expression)
    assert match, f"{expression!r} is not ${{VAR=default}}"
    return match.group(1), match.group(2)


# Flex Consumption -------------------------------------------------------------------------------------------------


def test_the_flex_site_sets_no_ftps_state_and_the_checkov_skip_says_why() -> None:
    functions = module("functions")
    site = functions.template.resource("functionApp")
    site_config = site.obj.get("properties", "siteConfig")
    assert isinstance(site_config, Obj) and "minTlsVersion" in site_config.items
    assert not any(isinstance(n, Obj) and "ftpsState" in n.items for n in walk(site.obj)), (
        "Flex Consumption rejects siteConfig.ftpsState (ARM 51021)"
    )
    skip = re.search(r"checkov:skip=CKV_AZURE_78:(.*)", site.source)
    assert skip and "51021" in skip.group(1) and "Flex" in skip.group(1), "the FTPS check's skip must say why"
    # FTP stays off all the same: basic publishing credentials are refused for FTP and SCM.
    policies = functions.template.resources_of("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {literal(functions, r.obj.items["name"]) for r in policies} == {"ftp", "scm"}
    assert all(literal(functions, r.obj.get("properties", "allow")) is False for r in policies)


def test_every_instance_memory_size_offered_is_one_the_api_accepts() -> None:
    accepted = {512, 2048, 4096}  # Flex Consumption's sizes; where 512 was checked: docs/deploy.md
    for scope, name in ((main(), "functionInstanceMemoryMB"), (module("functions"), "instanceMemoryMB")):
        allowed = scope.template.params[name].decorator("allowed")
        assert allowed is not None and set(literal(scope, allowed.args[0])) <= accepted, name  # type: ignore[arg-type]
    assert literal(main(), main().template.params["functionInstanceMemoryMB"].default) == 2048
    assert "512" in DEPLOY_DOC.read_text() and "Durable" in DEPLOY_DOC.read_text()


# The chat model ---------------------------------------------------------------------------------------------------


def test_model_name_version_and_type_are_azd_parameters_with_a_current_default() -> None:
    expected = {  # main.bicep parameter -> (azd variable, default)
        "chatModelName": ("AZURE_OPENAI_MODEL", "gpt-4.1-mini"),
        "chatModelVersion": ("AZURE_OPENAI_MODEL_VERSION", "2025-04-14"),
        "chatModelSku": ("AZURE_OPENAI_MODEL_SKU", "GlobalStandard"),
        "chatModelCapacity": ("AZURE_OPENAI_MODEL_CAPACITY", "30"),
    }
    params, mapped = main().template.params, parameters()
    doc = DEPLOY_DOC.read_text()
    for name, (variable, default) in expected.items():
        assert azd_default(mapped[name]) == (variable, default), name
        assert str(literal(main(), params[name].default)) == default, f"{name}: main.bicep and parameters differ"
        assert f"`{variable}`" in doc and f"`{default}`" in doc, f"docs/deploy.md must document {variable}"
    assert "gpt-4o-mini" not in (INFRA / "main.bicep").read_text() + (INFRA / "main.parameters.json").read_text()

    # The deployment uses exactly those: no model, version or type is fixed in the module.
    ai = module("ai")
    deployment = ai.template.resource("chatModel").obj
    for path, param in ((("properties", "model", "name"), "chatModelName"),
                        (("properties", "model", "version"), "chatModelVersion"),
                        (("sku", "name"), "chatModelSku"), (("sku", "capacity"), "chatModelCapacity")):
        node = deployment.get(*path)
        assert isinstance(node, Ref) and node.name in ai.bindings, f"{'.'.join(path)} is fixed in ai.bicep"
        bound, _ = ai.bindings[node.name]
        assert bound.source == param, f"{'.'.join(path)} is {bound.source}, not {param}"
    assert params["chatModelSku"].decorator("allowed") is not None


def test_the_deployment_name_follows_the_model_unless_set_and_is_never_read_back_from_an_output() -> None:
    variable, default = azd_default(parameters()["chatModelDeployment"])
    assert default == "" and variable not in main().template.outputs, (
        "an input read from an output would be remembered across `azd down`"
    )
    chosen = main().template.vars["chatDeployment"]
    assert isinstance(chosen, Ternary)
    assert chosen.source == "empty(chatModelDeployment) ? chatModelName : chatModelDeployment"
    assert main().template.module("ai").params.items["modelDeploymentName"].source == "chatDeployment"
    # The app calls the deployment that exists: AZURE_OPENAI_DEPLOYMENT is the module's output, not the input.
    setting = main().object_value(Ref(name="appSettings"), "AZURE_OPENAI_DEPLOYMENT")
    assert setting is not None and setting.source == "ai.outputs.modelDeploymentName"


# The gateway's first revision -------------------------------------------------------------------------------------


def test_the_gateway_has_its_real_port_and_healthz_probes_from_the_first_provision() -> None:
    gateway = module("gateway")
    app = gateway.template.resource("gateway").obj
    port = app.get("properties", "configuration", "ingress", "targetPort")
    assert isinstance(port, Ref) and port.name == "port", "the ingress port must not depend on which image runs"
    assert literal(gateway, port) == int(SETTINGS["GATEWAY_PORT"][0]) == 8765

    container = only(app.get("properties", "template", "containers"))
    probes = container.get("probes")
    assert isinstance(probes, Arr), "probes must be a plain list, present whichever image runs"
    kinds = {}
    for probe in probes.items:
        assert isinstance(probe, Obj)
        assert literal(gateway, probe.get("httpGet", "path")) == "/healthz"
        assert probe.get("httpGet", "port").source == "port"  # type: ignore[union-attr]
        kinds[literal(gateway, probe.items["type"])] = probe
    assert {"Readiness", "Liveness"} <= set(kinds)


def test_before_the_first_deploy_a_placeholder_that_serves_healthz_on_the_gateway_port_runs() -> None:
    gateway = module("gateway")
    placeholder = literal(gateway, gateway.template.vars["placeholderImage"])
    # Microsoft's ASP.NET sample: listens on ASPNETCORE_HTTP_PORTS and maps /healthz (dotnet-docker samples/aspnetapp).
    assert placeholder == "mcr.microsoft.com/dotnet/samples:aspnetapp"
    image = gateway.template.vars["image"]
    assert image.source == "empty(imageName) ? placeholderImage : imageName"
    env = gateway.template.vars["placeholderEnv"]
    assert isinstance(env, Ternary) and env.test.source == "usesPlaceholder"  # type: ignore[union-attr]
    (variable,) = env.then.items  # type: ignore[union-attr]
    assert literal(gateway, variable.items["name"]) == "ASPNETCORE_HTTP_PORTS"  # type: ignore[union-attr]
    assert variable.items["value"].source == "string(port)"  # type: ignore[union-attr]
    assert "ASPNETCORE_HTTP_PORTS" not in SETTINGS


def test_the_gateway_image_is_read_from_the_live_app_not_remembered_in_the_environment() -> None:
    assert main().template.module("gateway").params.items["imageName"].source == "gatewayImage.outputs.image"
    fetch = main().template.module("gatewayImage")
    assert fetch.path == "modules/gateway-image.bicep"
    assert fetch.params.items["exists"].source == "gatewayExists"
    assert fetch.params.items["name"].source == "names.gateway"
    assert literal(main(), main().template.params["gatewayExists"].default) is False
    # azd sets SERVICE_<NAME>_RESOURCE_EXISTS before every provision by looking for the app.
    assert azd_default(parameters()["gatewayExists"]) == ("SERVICE_GATEWAY_RESOURCE_EXISTS", "false")

    reader = module("gatewayImage")
    existing = reader.template.resource("existingApp")
    assert existing.existing and existing.type == "Microsoft.App/containerApps"
    assert existing.condition is not None and existing.condition.source == "exists"
    output = reader.template.outputs["image"].value
    assert isinstance(output, Ternary) and output.test.source == "exists"  # type: ignore[union-attr]
    assert literal(reader, output.otherwise) == ""


# Redis ------------------------------------------------------------------------------------------------------------


def test_the_redis_access_policy_assignment_name_is_letters_and_digits_on_the_ga_api() -> None:
    redis = module("redis")
    for resource in redis.template.resources:
        assert not resource.api_version.endswith("-preview"), f"{resource.symbol} uses {resource.api_version}"
        assert resource.api_version >= "2025-04-01", "the first GA version with access policy assignments"
    assignment = redis.template.resource("accessPolicy").obj
    name = assignment.items["name"]
    # The API takes ^[A-Za-z0-9]{1,60}$: uniqueString gives 13 lowercase letters and digits; a GUID has hyphens.
    assert isinstance(name, Call) and name.name == "uniqueString", name.source
    assert "guid(" not in name.source and name.source != "principalId"


# Key Vault: the gateway's first secret read ----------------------------------------------------------------------


def test_the_gateway_reads_its_secret_only_after_the_role_assignment_has_had_time() -> None:
    # The Key Vault module holds the identity's Secrets User assignment ...
    vault = module("keyVault")
    readers = [r for r in vault.template.resources_of("Microsoft.Authorization/roleAssignments")
               if r.obj.get("properties", "principalId").source == "principalId"]  # type: ignore[union-attr]
    definition = readers[0].obj.get("properties", "roleDefinitionId") if len(readers) == 1 else None
    assert definition is not None and "secretsUser" in definition.source
    # ... the Container Apps environment is made after that whole module (creating it takes minutes) ...
    env = main().template.module("containerEnv").body.get("dependsOn")
    assert isinstance(env, Arr) and "keyVault" in {item.source for item in env.items}
    # ... and the gateway, in that environment, gets the secret's URI from the same module.
    gateway = main().template.module("gateway").params
    assert gateway.items["environmentId"].source == "containerEnv.outputs.id"
    secret_uri = main().object_value(gateway.items["secretSettings"], "SWITCHBOARD_TOKEN_SECRET")
    assert secret_uri is not None and secret_uri.source == "keyVault.outputs.tokenSecretUri"


# ACS --------------------------------------------------------------------------------------------------------------


def test_the_acs_role_is_named_and_deploy_md_says_what_is_and_is_not_verified() -> None:
    acs = (INFRA / "modules" / "acs.bicep").read_text()
    assert "09976791-48a7-449e-bb21-39d1a415f350" in acs and "Communication and Email Service Owner" in acs
    doc = DEPLOY_DOC.read_text()
    assert "Communication and Email Service Owner" in doc and "unverified" in doc

