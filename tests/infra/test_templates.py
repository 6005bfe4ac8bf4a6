"""Structural checks on infra/ (Bicep), read with tests/infra/bicep.py since no Bicep compiler runs here.

Each test states one promise of the deployment (issue 6): Flex Consumption, an always-warm gateway, serverless
Cosmos partitioned on /customer_id, Event Grid subscriptions that reach the app's Event Grid triggers, identity
instead of keys, and every setting the code reads set on both compute resources.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from shared.settings import SETTINGS
from tests.infra.bicep import (
    Arr, Call, For, Lit, Member, Node, Num, Obj, Ref, Scope, Str, Template, Ternary, parse_file, walk,
)

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

#: Settings the code reads that the templates deliberately do not set in Azure, each with its reason. A setting
#: added to shared/settings.py must either be set in infra/main.bicep (appSettings) or be listed here.
NOT_SET_IN_AZURE: dict[str, str] = {
    # Local only: the embedded stack and the local hosts.
    "PORT": "port of the local Functions host",
    "LOCAL_FUNCTION_KEY": "the local Functions host's stand-in for function keys; in Azure the host checks its own",
    "SWITCHBOARD_DATA_DIR": "folder of the embedded SQLite store and the local token secret; unused in Azure",
    "ACS_EMULATOR_PORT": "port of the local ACS emulator",
    # Keys the managed identity replaces.
    "COSMOS_KEY": "Cosmos DB takes Entra tokens only (disableLocalAuth)",
    "AZURE_OPENAI_API_KEY": "AI Services takes Entra tokens only (disableLocalAuth)",
    "ACS_ACCESS_KEY": "the identity holds a role on the ACS resource",
    "SPEECH_KEY": "AI Services takes Entra tokens only (disableLocalAuth)",
    "SPEECH_REGION": "the key-based alternative to SPEECH_ENDPOINT; with the identity the app refuses it without a key",
    # The non-Azure model path.
    "OPENAI_BASE_URL": "any OpenAI-compatible endpoint; Azure uses AZURE_OPENAI_ENDPOINT",
    "OPENAI_API_KEY": "key for OPENAI_BASE_URL",
    "OPENAI_MODEL": "model for OPENAI_BASE_URL",
    # Defaults that are right in Azure: change them in the portal, or set them in main.bicep and drop them here.
    "COSMOS_VERIFY_TLS": "default true; false is for the local emulator only",
    "SESSION_TTL_SECONDS": "default",
    "SESSION_INDEX_MAX": "default",
    "SESSION_RETENTION_DAYS": "default",
    "ANONYMOUS_CUSTOMER_TTL_SECONDS": "default",
    "AZURE_OPENAI_API_VERSION": "default",
    "LLM_TIMEOUT_SECONDS": "default",
    "FOUNDRY_AGENT_PREFIX": "default: the agents `python -m shared.foundry sync` creates are switchboard-<scenario>-<agent>",
    "HANDOFF_REMIND_AFTER_SECONDS": "default",
    "HANDOFF_EXPIRE_AFTER_SECONDS": "default",
    "CALLBACK_POLL_SECONDS": "default",
    "CALLBACK_MAX_TURN_WAIT_SECONDS": "default",
    "CALLBACK_RETRY_AFTER_SECONDS": "default",
    "CALLBACK_OUTCOME_WAIT_SECONDS": "default",
    "CALLBACK_SCREEN_SECONDS": "default",
    "ACS_CALL_FROM": "default: calls come from ACS_SMS_FROM; set it where the resource's calling number cannot text",
    "WEBCHAT_TOKEN_TTL_SECONDS": "default",
    "WEBCHAT_MAX_MESSAGE_CHARS": "default",
    "GATEWAY_TURN_DETECTION": "default",
    "GATEWAY_TURN_PAUSE_MS": "default",
    "GATEWAY_TURN_WAIT_MS": "default",
    "GATEWAY_END_OF_TURN_MS": "default",
    "GATEWAY_WORKERS": "default: one worker process per core of the replica",
    "GATEWAY_PRELOAD_MODELS": "default",
    "GATEWAY_STATS_KEY": "unset: /stats is loopback-only on the public ingress; set it (a Key Vault secret) to read it remotely",
    "SPEECH_VOICE": "default",
    "SPEECH_LANGUAGE": "default",
    "CALL_AUDIO_SAMPLE_RATE": "default",
    "CALL_TOKEN_TTL_SECONDS": "default",
    "CALL_MEDIA_TOKEN_TTL_SECONDS": "default",
    "WEBCHAT_SESSIONS_PER_ADDRESS": "default",
    "WEBCHAT_SESSIONS_WINDOW_SECONDS": "default",
    "ACS_OPENID_CONFIGURATION_URL": "default: ACS's published OpenID metadata",
    # Telemetry: Azure exports to Application Insights (APPLICATIONINSIGHTS_CONNECTION_STRING, set by main.bicep).
    "OTEL_EXPORTER_OTLP_ENDPOINT": "an OTLP collector instead of, or beside, Application Insights; none in Azure",
    "SWITCHBOARD_TELEMETRY": "console or JSON-lines export, for a local run",
    "SWITCHBOARD_SUMMARY_SECONDS": "the live summary `make run` prints; the Functions host has no console to read",
}
#: Set only in some deployments, and then checked separately.
CONDITIONAL = {"REDIS_URL": "only with redisSku != none; a plain rediss:// URL without a key (the app signs in with Entra ID)"}
#: Secrets: Key Vault references on the function app, Key Vault-backed secrets on the gateway, never outputs.
SECRETS = {"SWITCHBOARD_TOKEN_SECRET"}

#: Where the templates may read a key, and why identity is not possible there. Anything else fails.
LIST_KEYS_ALLOWED = {
    "events.bicep": "Event Grid delivers to the Functions host's Event Grid webhook, which only takes its system key",
}

#: The Event Grid trigger each ACS event type must reach.
EXPECTED_ROUTES = {
    "Microsoft.Communication.IncomingCall": "incoming_call",
    "Microsoft.Communication.AdvancedMessageReceived": "whatsapp_events",
    "Microsoft.Communication.AdvancedMessageDeliveryStatusUpdated": "whatsapp_events",
    "Microsoft.Communication.SMSReceived": "sms_events",
    "Microsoft.Communication.SMSDeliveryReportReceived": "sms_events",
}


# Reading the templates --------------------------------------------------------------------------------------------


@cache
def main() -> Scope:
    return Scope(parse_file(INFRA / "main.bicep"))


@cache
def module(symbol: str) -> Scope:
    if symbol == "events":
        return events_template()
    return main().module_scope(main().template.module(symbol), INFRA)


@cache
def events_template() -> Scope:
    """events.bicep on its own: the postdeploy hook deploys it into the resource group, not main.bicep."""
    return Scope(parse_file(INFRA / "modules" / "events.bicep"))


def literal(scope: Scope, node: Node | None) -> object:
    """The value of a literal (following references to vars, bound params and defaults), else the node."""
    node, scope = scope.resolve(node) if node is not None else (None, scope)
    if isinstance(node, Str) and node.literal is not None:
        return node.literal
    if isinstance(node, (Num, Lit)):
        return node.value
    if isinstance(node, Arr):
        return [literal(scope, item) for item in node.items]
    return node


def function_app_settings() -> tuple[set[str], set[str], Scope, Node]:
    functions = module("functions")
    settings = functions.template.resource("settings")
    assert settings.type == "Microsoft.Web/sites/config" and literal(functions, settings.obj.items["name"]) == "appsettings"
    properties = settings.obj.items["properties"]
    definite, possible = functions.object_keys(properties)
    return definite, possible, functions, properties


def gateway_env_names() -> tuple[set[str], set[str]]:
    """(always set, possibly set) environment variable names of the gateway container."""
    gateway = module("gateway")
    app = gateway.template.resource("gateway")
    container = only(app.obj.get("properties", "template", "containers"))
    env, scope = gateway.resolve(container.get("env"))  # type: ignore[arg-type]
    assert isinstance(env, Call) and env.name == "concat", "gateway env is expected to be concat(plainEnv, secretEnv, ...)"
    definite: set[str] = set()
    possible: set[str] = set()
    for part in env.args:
        loop, loop_scope = scope.resolve(part)
        if isinstance(loop, Ternary):  # the placeholder's own variables, only while it runs
            for arr in (loop.then, loop.otherwise):
                assert isinstance(arr, Arr)
                possible |= {literal(loop_scope, item.items["name"]) for item in arr.items if isinstance(item, Obj)}  # type: ignore[misc]
            continue
        assert isinstance(loop, For) and isinstance(loop.iterable, Call) and loop.iterable.name == "items"
        assert isinstance(loop.body, Obj) and isinstance(loop.body.items["name"], Member)
        d, p = loop_scope.object_keys(loop.iterable.args[0])
        definite |= d
        possible |= p
    return definite, possible


def role_guid(scope: Scope, node: Node) -> object:
    """A role definition id given as a literal, a var, or a member of a var object (`roles.blobDataOwner`)."""
    if isinstance(node, Member) and isinstance(node.target, Ref):
        value = scope.object_value(node.target, node.name)
        return literal(scope, value) if value is not None else node
    return literal(scope, node)


def only(node: Node | None) -> Obj:
    assert isinstance(node, Arr) and len(node.items) == 1, f"expected one item in {node.source if node else None}"
    item = node.items[0]
    assert isinstance(item, Obj)
    return item


def all_templates() -> list[Template]:
    return [parse_file(path) for path in sorted(INFRA.rglob("*.bicep"))]


def code_without_comments(text: str) -> str:
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


@cache
def event_grid_functions() -> dict[str, str]:
    """Every Event Grid trigger function the app registers: name -> trigger type, read from function_app itself."""
    script = (
        "import json, function_app\n"
        "print(json.dumps({f.get_function_name(): f.get_trigger().type for f in function_app.app.get_functions()}))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"importing function_app failed:\n{result.stderr[-3000:]}"
    functions = json.loads(result.stdout.strip().splitlines()[-1])
    return {name: kind for name, kind in functions.items() if kind == "eventGridTrigger"}


# azure.yaml -------------------------------------------------------------------------------------------------------


def test_azure_yaml_deploys_the_function_app_and_the_gateway_container() -> None:
    spec = yaml.safe_load((ROOT / "azure.yaml").read_text())
    services = spec["services"]
    assert set(services) == {"functions", "gateway"}
    assert services["functions"] | {"remoteBuild": True} == {
        "project": ".", "language": "python", "host": "function", "remoteBuild": True,
    }
    gateway = services["gateway"]
    assert gateway["host"] == "containerapp" and gateway["project"] == "."
    assert gateway["docker"] == {"path": "media_gateway/Dockerfile", "context": "."}
    assert spec["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    for platform in ("posix", "windows"):
        hook = spec["hooks"]["postdeploy"][platform]["run"]
        assert (ROOT / hook).is_file(), f"the {platform} postdeploy hook {hook} is missing"

    # azd finds each service's resource by its azd-service-name tag.
    site = module("functions").template.resource("functionApp")
    assert "'azd-service-name': 'functions'" in site.obj.items["tags"].source
    app = module("gateway").template.resource("gateway")
    assert "'azd-service-name': 'gateway'" in app.obj.items["tags"].source


def test_every_main_parameter_without_a_default_comes_from_the_parameters_file() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    params = main().template.params
    assert set(parameters) <= set(params), f"unknown parameters: {set(parameters) - set(params)}"
    missing = {name for name, p in params.items() if p.default is None} - set(parameters)
    assert not missing, f"parameters azd cannot fill: {missing}"
    # The token secret is read back from Key Vault on every provision, so tokens survive a redeploy.
    assert parameters["tokenSecret"]["value"].startswith("$(secretOrRandomPassword ${AZURE_KEY_VAULT_NAME} ")
    assert main().template.params["tokenSecret"].decorator("secure") is not None


# Function app: Flex Consumption, identity-based storage -----------------------------------------------------------


def test_the_function_app_runs_on_flex_consumption_with_python_3_11() -> None:
    functions = module("functions")
    plan = functions.template.resource("plan").obj
    assert literal(functions, plan.get("sku", "name")) == "FC1"
    assert literal(functions, plan.get("sku", "tier")) == "FlexConsumption"

    site = functions.template.resource("functionApp")
    assert site.type == "Microsoft.Web/sites" and "functionapp,linux" == literal(functions, site.obj.items["kind"])
    config = site.obj.get("properties", "functionAppConfig")
    assert isinstance(config, Obj), "Flex Consumption apps are configured through functionAppConfig"
    assert literal(functions, config.get("runtime", "name")) == "python"
    assert literal(functions, config.get("runtime", "version")) == "3.11"
    storage = config.get("deployment", "storage")
    assert literal(functions, storage.get("type")) == "blobContainer"  # type: ignore[union-attr]
    assert literal(functions, storage.get("authentication", "type")) == "UserAssignedIdentity"  # type: ignore[union-attr]


def test_always_ready_instances_default_to_zero_and_go_to_incoming_call() -> None:
    param = main().template.params["alwaysReadyInstances"]
    assert literal(main(), param.default) == 0
    assert "ring" in literal(main(), param.decorator("description").args[0])  # type: ignore[union-attr,operator]
    functions = module("functions")
    scale = functions.template.resource("functionApp").obj.get("properties", "functionAppConfig", "scaleAndConcurrency")
    always_ready = scale.get("alwaysReady")  # type: ignore[union-attr]
    assert "'function:incoming_call'" in always_ready.source  # type: ignore[union-attr]
    assert "incoming_call" in event_grid_functions(), "the always-ready group names a function the app does not have"


def test_the_host_reaches_storage_and_the_task_hub_with_the_managed_identity() -> None:
    definite, _, functions, properties = function_app_settings()
    assert literal(functions, functions.object_value(properties, "AzureWebJobsStorage__credential")) == "managedidentity"
    assert {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__clientId", "TASKHUB_NAME"} <= definite
    # No connection string, and nothing Flex Consumption refuses as an app setting.
    assert not definite & {"AzureWebJobsStorage", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION",
                           "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_RUN_FROM_PACKAGE"}
    host = json.loads((ROOT / "host.json").read_text())
    durable = host["extensions"]["durableTask"]
    assert durable["hubName"] == "%TASKHUB_NAME%"
    assert durable["storageProvider"]["connectionName"] == "AzureWebJobsStorage"


# Gateway: always warm, smallest, WebSocket ingress ----------------------------------------------------------------


def test_the_gateway_keeps_one_warm_replica_on_the_smallest_size() -> None:
    gateway = module("gateway")
    app = gateway.template.resource("gateway")
    assert app.type == "Microsoft.App/containerApps"
    scale = app.obj.get("properties", "template", "scale")
    assert isinstance(literal(gateway, scale.get("minReplicas")), int)  # type: ignore[union-attr]
    assert literal(gateway, scale.get("minReplicas")) >= 1  # type: ignore[union-attr,operator]
    max_replicas = scale.get("maxReplicas")  # type: ignore[union-attr]
    assert isinstance(max_replicas, Ref) and max_replicas.name in gateway.template.params
    assert "gatewayMaxReplicas" in main().template.params

    container = only(app.obj.get("properties", "template", "containers"))
    cpu = container.get("resources", "cpu")
    assert isinstance(cpu, Call) and cpu.name == "json" and literal(gateway, cpu.args[0]) == "0.25"
    assert literal(gateway, container.get("resources", "memory")) == "0.5Gi"

    ingress = app.obj.get("properties", "configuration", "ingress")
    assert literal(gateway, ingress.get("external")) is True  # type: ignore[union-attr]
    assert literal(gateway, ingress.get("transport")) in ("auto", "http")  # both carry WebSocket upgrades
    assert literal(gateway, ingress.get("allowInsecure")) is False  # type: ignore[union-attr]


# Cosmos DB: serverless, partitioned on /customer_id ---------------------------------------------------------------


def test_cosmos_is_serverless_with_customers_on_customer_id_and_sessions_with_ttl() -> None:
    cosmos = module("cosmos")
    account = cosmos.template.resource("account").obj
    capabilities = literal(cosmos, account.get("properties", "capabilities"))
    assert any(isinstance(c, Obj) and literal(cosmos, c.items["name"]) == "EnableServerless" for c in capabilities)  # type: ignore[union-attr]
    assert literal(cosmos, account.get("properties", "disableLocalAuth")) is True

    containers = {literal(cosmos, r.obj.items["name"]): r.obj for r in cosmos.template.resources_of(
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")}
    assert set(containers) == {SETTINGS["COSMOS_CONTAINER"][0], SETTINGS["COSMOS_STATE_CONTAINER"][0]}
    customers = containers[SETTINGS["COSMOS_CONTAINER"][0]]
    assert literal(cosmos, customers.get("properties", "resource", "partitionKey", "paths")) == ["/customer_id"]
    # TTL on, no default: anonymous visitors' items and closed sessions past retention expire by their own `ttl`.
    assert customers.get("properties", "resource", "defaultTtl").source == "-1"  # type: ignore[union-attr]
    sessions = containers[SETTINGS["COSMOS_STATE_CONTAINER"][0]]
    assert literal(cosmos, sessions.get("properties", "resource", "partitionKey", "paths")) == ["/id"]
    assert sessions.get("properties", "resource", "defaultTtl").source == "-1"  # type: ignore[union-attr]


# Event Grid: the subscriptions reach the app's Event Grid triggers ------------------------------------------------


def test_each_acs_event_type_is_delivered_to_its_event_grid_trigger_with_retry_and_dead_letter() -> None:
    events = module("events")
    routes: dict[str, str] = {}
    for sub in events.template.resources_of("Microsoft.EventGrid/systemTopics/eventSubscriptions"):
        props = sub.obj.items["properties"]
        assert isinstance(props, Obj)
        url = props.get("destination", "properties", "endpointUrl")
        assert literal(events, props.get("destination", "endpointType")) == "WebHook"
        assert isinstance(url, Str)
        base, scope = events.resolve(url.parts[0])  # type: ignore[arg-type]
        assert isinstance(base, Str) and base.parts[-1] == "/runtime/webhooks/EventGrid", base.source
        match = re.fullmatch(r"\?functionName=(\w+)&code=", url.parts[1])  # type: ignore[arg-type]
        assert match, f"{sub.symbol}: endpoint is not the host's Event Grid webhook: {url.source}"
        key, _ = events.resolve(url.parts[2])  # type: ignore[arg-type]
        assert key.source.endswith(".systemKeys.eventgrid_extension"), key.source
        for event_type in literal(events, props.get("filter", "includedEventTypes")):  # type: ignore[union-attr]
            routes[event_type] = match.group(1)
        retry = props.get("retryPolicy")
        assert isinstance(retry, Obj) and {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"} <= set(retry.items)
        dead_letter, _ = events.resolve(props.items["deadLetterWithResourceIdentity"])
        assert isinstance(dead_letter, Obj) and literal(events, dead_letter.get("deadLetterDestination", "endpointType")) == "StorageBlob"

    assert routes == EXPECTED_ROUTES
    assert set(routes.values()) == set(event_grid_functions()), (
        "every Event Grid trigger in function_app must have a subscription, and every subscription a trigger"
    )
    # An IncomingCall delivered after the caller hung up is useless: retry briefly.
    incoming = events.template.resource("incomingCall").obj
    assert literal(events, incoming.get("properties", "retryPolicy", "eventTimeToLiveInMinutes")) <= 5  # type: ignore[operator]


def test_the_system_topic_publishes_the_acs_resource_and_dead_letters_as_the_identity() -> None:
    acs = module("acs")
    topic = acs.template.resource("systemTopic").obj
    assert literal(acs, topic.get("properties", "topicType")) == "Microsoft.Communication.CommunicationServices"
    assert topic.get("properties", "source").source == "acs.id"  # type: ignore[union-attr]
    assert literal(acs, topic.get("identity", "type")) == "UserAssigned"
    # The subscriptions wait for the deployed code: the postdeploy hook deploys them, main.bicep does not.
    assert "modules/events.bicep" not in {m.path for m in main().template.modules}
    assert {"identity", "storage"} <= {r.symbol for r in events_template().template.resources if r.existing}


# Identity instead of keys -----------------------------------------------------------------------------------------


def test_keys_are_read_only_where_identity_is_not_possible() -> None:
    pattern = re.compile(r"\blist(Keys|ConnectionStrings|Credentials|AccountSas|ServiceSas|Secrets)\s*\(", re.I)
    readers = {t.path.name for t in all_templates() if pattern.search(code_without_comments(t.text))}
    assert readers <= set(LIST_KEYS_ALLOWED), f"templates reading keys without a reason: {readers - set(LIST_KEYS_ALLOWED)}"


def test_services_that_take_entra_tokens_refuse_keys() -> None:
    assert literal(module("cosmos"), module("cosmos").template.resource("account").obj.get("properties", "disableLocalAuth")) is True
    assert literal(module("ai"), module("ai").template.resource("account").obj.get("properties", "disableLocalAuth")) is True
    storage = module("storage").template.resource("storage").obj
    assert literal(module("storage"), storage.get("properties", "allowSharedKeyAccess")) is False
    registry = module("registry").template.resource("registry").obj
    assert literal(module("registry"), registry.get("properties", "adminUserEnabled")) is False
    vault = module("keyVault").template.resource("vault").obj
    assert literal(module("keyVault"), vault.get("properties", "enableRbacAuthorization")) is True


def test_the_identity_holds_a_data_plane_role_on_each_service() -> None:
    roles = {
        "storage": {"b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
                    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"},  # blob owner, queue and table data contributor
        "ai": {"5e0bd9bd-7b93-4f28-af87-19fc36ad61bd", "f2dc8367-1007-4938-bd23-fe263f013447"},  # OpenAI, Speech user
        "acs": {"09976791-48a7-449e-bb21-39d1a415f350"},  # Communication and Email Service Owner
        "keyVault": {"4633458b-17de-408a-b874-0445c86b69e6"},  # Key Vault Secrets User
        "registry": {"7f951dda-4ed3-4680-a7ca-43fe172d538d"},  # AcrPull
        "monitoring": {"3913510d-42f4-4e42-8a64-420c390055eb"},  # Monitoring Metrics Publisher
    }
    for symbol, expected in roles.items():
        scope = module(symbol)
        granted = set()
        for assignment in scope.template.resources_of("Microsoft.Authorization/roleAssignments"):
            props = assignment.obj.items["properties"]
            assert isinstance(props, Obj)
            if props.items["principalId"].source != "principalId":
                continue  # the deployer's own assignment
            definition = props.items["roleDefinitionId"]
            assert isinstance(definition, Call) and definition.name == "subscriptionResourceId", definition.source
            granted.add(role_guid(scope, definition.args[1]))
        missing = expected - granted
        assert not missing, f"{symbol}: the identity lacks {missing}"
        # principalId is the managed identity's, as main.bicep passes it.
        assert main().template.module(symbol).params.items["principalId"].source == "identity.outputs.principalId"

    cosmos = module("cosmos")
    sql_role = only(Arr(items=[r.obj for r in cosmos.template.resources_of("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")]))
    assert "00000000-0000-0000-0000-000000000002" in sql_role.get("properties", "roleDefinitionId").source  # type: ignore[union-attr]
    redis = module("redis").template.resource("accessPolicy")
    assert redis.type == "Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments"
    assert redis.obj.get("properties", "user", "objectId").source == "principalId"  # type: ignore[union-attr]
    # Entra ID only: no access key exists, and the app's URL carries none (shared/stores/azure_redis.py then signs in
    # with the identity: tests/stores/test_redis_entra.py).
    database = module("redis").template.resource("database")
    assert literal(module("redis"), database.obj.get("properties", "accessKeysAuthentication")) == "Disabled"
    url = module("redis").template.outputs["url"].value
    assert isinstance(url, Str) and url.parts[0] == "rediss://" and url.parts[-1] == ":10000/0", url
    assert "listKeys" not in module("redis").template.path.read_text()


def test_redis_is_optional_and_off_by_default_with_cosmos_taking_its_place() -> None:
    params = main().template.params
    assert literal(main(), params["redisSku"].default) == "none"
    assert "none" in literal(main(), params["redisSku"].decorator("allowed").args[0])  # type: ignore[union-attr,operator]
    assert main().template.module("redis").condition.source == "useRedis"  # type: ignore[union-attr]
    session_state = main().object_value(Ref(name="appSettings"), "SESSION_STATE")
    assert session_state.source == "useRedis ? 'redis' : 'cosmos'"  # type: ignore[union-attr]


def test_the_ai_account_is_ai_services_and_the_foundry_project_is_optional() -> None:
    # The model itself: tests/infra/test_first_deploy.py.
    params = main().template.params
    assert literal(main(), params["deployFoundryProject"].default) is False
    ai = module("ai")
    assert literal(ai, ai.template.resource("account").obj.items["kind"]) == "AIServices"
    assert ai.template.resource("project").condition.source == "deployFoundryProject"  # type: ignore[union-attr]


def test_monitoring_is_application_insights_on_log_analytics() -> None:
    monitoring = module("monitoring").template
    assert monitoring.resources_of("Microsoft.OperationalInsights/workspaces")
    insights = monitoring.resources_of("Microsoft.Insights/components")[0].obj
    assert insights.get("properties", "WorkspaceResourceId").source == "workspace.id"  # type: ignore[union-attr]


# Settings: what the code reads is set, on both compute resources --------------------------------------------------


def test_the_allow_list_names_only_settings_the_code_reads() -> None:
    stale = (set(NOT_SET_IN_AZURE) | set(CONDITIONAL)) - set(SETTINGS)
    assert not stale, f"allow-listed settings the code no longer reads: {stale}"


def test_every_setting_the_code_reads_is_set_on_the_function_app_and_the_gateway() -> None:
    required = set(SETTINGS) - set(NOT_SET_IN_AZURE) - set(CONDITIONAL)
    fn_definite, fn_possible, _, _ = function_app_settings()
    gw_definite, gw_possible = gateway_env_names()
    assert not required - fn_definite, f"not set on the function app: {sorted(required - fn_definite)}"
    assert not required - gw_definite, f"not set on the gateway: {sorted(required - gw_definite)}"
    assert set(CONDITIONAL) <= fn_possible and set(CONDITIONAL) <= gw_possible
    deliberately_unset = set(NOT_SET_IN_AZURE) & (fn_possible | gw_possible)
    assert not deliberately_unset, f"set although listed as not set in Azure: {deliberately_unset}"


def test_secrets_are_key_vault_references_and_no_setting_holds_a_key() -> None:
    _, possible, functions, properties = function_app_settings()
    for name in SECRETS:
        value = functions.object_value(properties, name)
        assert isinstance(value, Str) and value.parts[0] == "@Microsoft.KeyVault(SecretUri=", f"{name}: {value}"
    assert "keyVaultReferenceIdentity" in functions.template.resource("functionApp").obj.get("properties").items  # type: ignore[union-attr]
    keyish = re.compile(r"(_KEY|_SECRET|_PASSWORD|CONNECTION_STRING)$")
    # The Application Insights connection string is an ingestion identifier, not a credential (monitoring.bicep).
    for name in possible - SECRETS - {"APPLICATIONINSIGHTS_CONNECTION_STRING"}:
        assert not keyish.search(name), f"{name} looks like a secret but is a plain app setting"


def test_every_plain_setting_is_an_azd_output_and_no_secret_is() -> None:
    outputs = set(main().template.outputs)
    fn_definite, _, _, _ = function_app_settings()
    app_settings = set(SETTINGS) & fn_definite
    missing = app_settings - SECRETS - {"AZURE_CLIENT_ID"} - outputs  # AZURE_CLIENT_ID: see main.bicep's outputs
    assert not missing, f"settings azd does not write to the environment: {missing}"
    assert not outputs & SECRETS
    assert {"AZURE_CONTAINER_REGISTRY_ENDPOINT", "AZURE_KEY_VAULT_NAME", "AZURE_FUNCTION_APP_NAME",
            "AZURE_RESOURCE_GROUP"} <= outputs  # what azd and the postdeploy hook read


# Every resource and every skip ------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", all_templates(), ids=lambda t: t.path.name)
def test_resources_pin_an_api_version_and_skips_give_a_reason(template: Template) -> None:
    for resource in template.resources:
        assert re.fullmatch(r"Microsoft\.[A-Za-z]+(/[A-Za-z]+)+", resource.type), resource.type
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}(-preview)?", resource.api_version), resource.api_version
    for match in re.finditer(r"checkov:skip=(\S+?):(.*)", template.text):
        check, reason = match.group(1), match.group(2).strip()
        assert re.fullmatch(r"CKV2?_AZURE_\d+", check), check
        assert len(reason) >= 40, f"{template.path.name}: skip of {check} needs a real justification: {reason!r}"


def test_every_resource_in_a_module_reaches_main_or_the_postdeploy_hook() -> None:
    used = {m.path for m in main().template.modules}
    # events.bicep is deployed by the postdeploy hook (both shells), after the code: tests/infra/test_hooks.py.
    by_hook = {"modules/events.bicep"}
    for hook in ("postdeploy.sh", "postdeploy.ps1"):
        assert "modules/events.bicep" in (INFRA / "hooks" / hook).read_text(), hook
    on_disk = {f"modules/{p.name}" for p in (INFRA / "modules").glob("*.bicep")}
    assert on_disk == used | by_hook, f"modules nothing deploys: {on_disk - used - by_hook}"
