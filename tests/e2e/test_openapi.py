"""The OpenAPI document: structurally valid OpenAPI 3.1, and true of the running app.

The structural checks are the parts of the 3.1 specification a client or schemathesis relies on. The live checks
call every documented operation on a local host, for the happy path and each error the API promises, and require
the status to be one the document lists for that operation and the JSON body to match the documented schema,
checked by jsonschema_rs as JSON Schema 2020-12 (OpenAPI 3.1's dialect) with formats asserted. A validator passes
over keywords it does not know, so a misspelt one would silently check nothing: the document may use only 2020-12's
keywords (KEYWORDS).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import jsonschema_rs
import pytest

from functions.openapi import DEFAULT_MAX_MESSAGE_CHARS, openapi_document
from shared.notifications import START_AUDIENCE
from shared.tokens import TokenSigner, load_secret
from tests.app_functions import registered_functions
from tests.handoff_links import _unverified_claims

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PATH_ITEM_KEYS = {"$ref", "summary", "description", "servers", "parameters", *METHODS}
OPERATION_KEYS = {
    "tags", "summary", "description", "externalDocs", "operationId", "parameters", "requestBody", "responses",
    "callbacks", "deprecated", "security", "servers",
}
STATUS_KEY = re.compile(r"^(?:[1-5](?:\d\d|XX)|default)$")
COMPONENT_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
#: JSON Schema 2020-12's keywords (core, applicator, validation, format, content, meta-data, unevaluated).
KEYWORDS = {
    "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$defs", "$comment", "$vocabulary",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "prefixItems", "items", "contains",
    "properties", "patternProperties", "additionalProperties", "propertyNames", "type", "enum", "const",
    "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "maxItems", "minItems", "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties",
    "required", "dependentRequired", "format", "contentEncoding", "contentMediaType", "contentSchema", "title",
    "description", "default", "deprecated", "readOnly", "writeOnly", "examples", "unevaluatedItems",
    "unevaluatedProperties",
}
DOCUMENT_URI = "urn:switchboard:openapi"


# --- helpers ------------------------------------------------------------------------------------------------------


def resolve_pointer(document: dict[str, Any], ref: str) -> Any:
    """The target of a local reference like `#/components/schemas/Error`; KeyError if it dangles."""
    if not ref.startswith("#"):
        raise KeyError(f"{ref}: only local references are used in this document")
    try:
        return jsonschema_rs.Registry([(DOCUMENT_URI, document)]).resolver(DOCUMENT_URI).lookup(ref).contents
    except jsonschema_rs.ReferencingError as exc:
        raise KeyError(f"{ref}: {exc}") from None


def deref(document: dict[str, Any], node: Any) -> Any:
    """Follow `$ref` chains of non-schema objects (responses, parameters, headers, request bodies)."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref not in seen, f"reference cycle through {ref}"
        seen.add(ref)
        node = resolve_pointer(document, ref)
    return node


def walk(node: Any, where: str = "#"):
    """Every (pointer, dict) in the document."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk(value, f"{where}/{str(key).replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{where}/{index}")


def operations(document: dict[str, Any]):
    """(path, method, path item, operation) for every operation."""
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item, item[method]


def schemas_in(document: dict[str, Any]):
    """(pointer, schema) for every schema the document holds: components and inline, nested ones included."""
    roots: list[tuple[str, Any]] = [
        (f"#/components/schemas/{name}", schema) for name, schema in document["components"]["schemas"].items()
    ]
    for pointer, node in walk(document):
        if "schema" in node and isinstance(node["schema"], dict) and "/components/schemas" not in pointer:
            roots.append((f"{pointer}/schema", node["schema"]))

    def nested(pointer: str, schema: dict[str, Any]):
        yield pointer, schema
        for name, sub in (schema.get("properties") or {}).items():
            yield from nested(f"{pointer}/properties/{name}", sub)
        if isinstance(schema.get("items"), dict):
            yield from nested(f"{pointer}/items", schema["items"])
        if isinstance(schema.get("additionalProperties"), dict):
            yield from nested(f"{pointer}/additionalProperties", schema["additionalProperties"])

    for pointer, schema in roots:
        yield from nested(pointer, schema)


class SchemaError(AssertionError):
    pass


def validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A 2020-12 validator for `schema`, whose `$ref`s point into the document's components, formats asserted."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]}, validate_formats=True)


def validate(document: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """Check `value` against a schema of the document; SchemaError naming every spot that does not match."""
    if errors := [f"$/{'/'.join(map(str, e.instance_path))}: {e.message}"
                  for e in validator(document, schema).iter_errors(value)]:
        raise SchemaError("; ".join(errors))


def documented_statuses(operation: dict[str, Any]) -> set[str]:
    return set(operation["responses"])


def is_documented(operation: dict[str, Any], status: int) -> bool:
    keys = documented_statuses(operation)
    return str(status) in keys or f"{status // 100}XX" in keys or "default" in keys


# --- structure ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def test_document_is_plain_json(document):
    assert json.loads(json.dumps(document)) == document
    assert document == openapi_document(), "openapi_document() must return the same document every time"
    document["info"]["title"] = "changed"
    assert openapi_document()["info"]["title"] != "changed", "openapi_document() must return a fresh copy"


def test_top_level(document):
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    assert set(document) <= {"openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks", "components",
                             "security", "tags", "externalDocs"}
    assert isinstance(document["info"]["title"], str) and document["info"]["title"]
    assert isinstance(document["info"]["version"], str) and document["info"]["version"]
    assert "servers" not in document, "without server_url the paths resolve against the host serving the document"
    for kind, components in document["components"].items():
        for name in components:
            assert COMPONENT_NAME.match(name), f"components.{kind}.{name}: not a valid component name"


def test_every_reference_resolves(document):
    refs = [(pointer, node["$ref"]) for pointer, node in walk(document) if isinstance(node.get("$ref"), str)]
    assert refs, "the document should share its schemas through components"
    for pointer, ref in refs:
        try:
            resolve_pointer(document, ref)
        except (KeyError, IndexError, ValueError) as exc:
            pytest.fail(f"{pointer}: $ref {ref} does not resolve ({exc})")


def test_every_component_is_used(document):
    used = {node["$ref"] for _, node in walk(document) if isinstance(node.get("$ref"), str)}
    for kind in ("schemas", "responses", "headers", "parameters", "requestBodies"):
        for name in document["components"].get(kind, {}):
            assert f"#/components/{kind}/{name}" in used, f"components.{kind}.{name} is never referenced"


def test_paths_and_operations(document):
    assert document["paths"], "no paths"
    operation_ids = []
    declared_tags = {tag["name"] for tag in document.get("tags", [])}
    for path, item in document["paths"].items():
        assert path.startswith("/"), f"{path}: paths start with /"
        assert set(item) <= PATH_ITEM_KEYS, f"{path}: unknown keys {set(item) - PATH_ITEM_KEYS}"
        assert any(method in item for method in METHODS), f"{path}: no operation"
    for path, method, item, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert set(operation) <= OPERATION_KEYS, f"{where}: unknown keys {set(operation) - OPERATION_KEYS}"
        operation_ids.append(operation.get("operationId"))
        assert operation.get("summary") or operation.get("description"), f"{where}: say what it does"
        assert set(operation.get("tags", [])) <= declared_tags, f"{where}: undeclared tag"

        responses = operation.get("responses")
        assert isinstance(responses, dict) and responses, f"{where}: every operation needs responses"
        assert any(key.startswith("2") for key in responses), f"{where}: no success response"
        for status, response in responses.items():
            assert STATUS_KEY.match(status), f"{where}: {status!r} is not a status code"
            response = deref(document, response)
            assert isinstance(response.get("description"), str), f"{where} {status}: description is required"
            for media, body in (response.get("content") or {}).items():
                assert "/" in media and "schema" in body, f"{where} {status}: {media} needs a schema"
            for name, header in (response.get("headers") or {}).items():
                header = deref(document, header)
                assert "schema" in header or "content" in header, f"{where} {status}: header {name} needs a schema"
            if status[0] in "45":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{where} {status}: errors use Error"
        if "503" in responses:
            headers = deref(document, responses["503"]).get("headers", {})
            assert deref(document, headers["Retry-After"])["required"] is True, f"{where}: 503 carries Retry-After"

        if "requestBody" in operation:
            body = deref(document, operation["requestBody"])
            assert body.get("content"), f"{where}: requestBody needs content"

        parameters = {}
        for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
            parameter = deref(document, parameter)
            assert parameter["in"] in ("query", "header", "path", "cookie"), f"{where}: bad parameter location"
            assert ("schema" in parameter) != ("content" in parameter), f"{where}: schema or content, not both"
            parameters[(parameter["name"], parameter["in"])] = parameter  # operation-level overrides path-level
        templated = set(re.findall(r"\{([^{}]+)\}", path))
        in_path = {name for name, where_ in parameters if where_ == "path"}
        assert templated == in_path, f"{where}: path template names {templated} but path parameters {in_path}"
        for (name, location), parameter in parameters.items():
            if location == "path":
                assert parameter.get("required") is True, f"{where}: path parameter {name} must be required"

        for requirement in operation.get("security", document.get("security", [])):
            for scheme in requirement:
                assert scheme in document["components"]["securitySchemes"], f"{where}: unknown security {scheme}"
    assert None not in operation_ids, "every operation needs an operationId"
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"


def test_security_schemes(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["webchatToken"] == {**schemes["webchatToken"], "type": "http", "scheme": "bearer"}
    assert schemes["functionKey"]["type"] == "apiKey"
    for path, method, _, operation in operations(document):
        if path == "/api/handoffs" or path.startswith("/api/calls/{call_id}"):
            assert operation.get("security") == [{"callControlToken": []}], "the media gateway's way in"
            assert {"401", "403"} <= documented_statuses(operation), f"{method.upper()} {path}: auth errors"
            continue
        if path == "/api/notifications/start":
            assert operation.get("security") == [{"notificationStartToken": []}], "the app's own start token"
            assert schemes["notificationStartToken"] == {**schemes["notificationStartToken"], "type": "http",
                                                         "scheme": "bearer"}
            assert "401" in documented_statuses(operation)
            continue
        if path == "/api/calls/callbacks":
            assert operation.get("security") == [{"callbackToken": []}], "Call Automation's callback URL token"
            assert schemes["callbackToken"] == {**schemes["callbackToken"], "type": "apiKey", "in": "query",
                                                "name": "token"}
            assert "401" in documented_statuses(operation)
            continue
        if path.startswith(("/api/ops/", "/api/handoffs", "/api/calls/placed/", "/api/customers/")) \
                or path == "/api/calls":
            assert operation.get("security") == [{"functionKey": []}], f"{method.upper()} {path}: operators only"
            continue
        if path.startswith("/api/desk/"):
            assert operation.get("security") == [{"deskSignIn": []}], f"{method.upper()} {path}: people signed in"
            assert schemes["deskSignIn"] == {**schemes["deskSignIn"], "type": "apiKey", "in": "cookie",
                                             "name": "AppServiceAuthSession"}
            assert {"401", "403"} <= documented_statuses(operation), f"{method.upper()} {path}: auth errors"
            continue
        protected = "{session_id}" in path
        assert bool(operation.get("security")) == protected, f"{method.upper()} {path}: bearer iff per-session"
        if protected:
            assert {"401", "403", "404"} <= documented_statuses(operation), f"{method.upper()} {path}: auth errors"


def test_schemas_are_checkable_and_closed(document):
    for pointer, schema in schemas_in(document):
        assert not set(schema) - KEYWORDS, f"{pointer}: not JSON Schema 2020-12, nothing would check it"
        if schema.get("type") == "object" and "properties" in schema:
            assert set(schema.get("required", [])) <= set(schema["properties"]), f"{pointer}: required but absent"
            # Objects whose shape others own (the OpenAPI spec, Call Automation's CloudEvents) stay open.
            if not pointer.endswith(("/OpenAPIDocument", "/CallEvents/items", "/CallEvents/items/properties/data")):
                assert schema.get("additionalProperties") is False, f"{pointer}: close the objects we shape"
        try:
            jsonschema_rs.meta.validate(schema)
            validator(document, schema)  # compiles its patterns and resolves its references
        except (jsonschema_rs.ValidationError, ValueError) as exc:
            pytest.fail(f"{pointer}: not a valid schema: {exc}")


def test_every_http_route_of_the_app_is_documented(document):
    """The document covers exactly the HTTP triggers function_app.py registers (Event Grid triggers are not HTTP
    routes of the app: the Functions host serves them at its own webhook)."""
    served = set()
    for function in registered_functions():
        trigger = function.get_trigger()
        if trigger.type != "httpTrigger":
            continue
        path = "/api/" + (trigger.route or function.get_function_name()).strip("/")
        path = re.sub(r"\{([^{}:?]+)(?::[^{}]*)?\??\}", r"{\1}", path)  # {id:int} and {id?} are {id} here
        served |= {(str(getattr(m, "value", m)).upper(), path) for m in trigger.methods or ()}
    documented = {(method.upper(), path) for path, method, _, _ in operations(document)}
    print(f"\n{len(served)} HTTP routes served, {len(documented)} documented")
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def test_the_documented_routes(document):
    routes = {(method.upper(), path) for path, method, _, _ in operations(document)}
    assert routes == {
        ("POST", "/api/calls"),
        ("GET", "/api/calls/placed/{call_id}"),
        ("POST", "/api/calls/callbacks"),
        ("GET", "/api/calls/{call_id}"),
        ("POST", "/api/calls/{call_id}/hangup"),
        ("POST", "/api/calls/{call_id}/transfer"),
        ("GET", "/api/webchat"),
        ("POST", "/api/webchat/sessions"),
        ("POST", "/api/webchat/sessions/{session_id}/messages"),
        ("GET", "/api/webchat/sessions/{session_id}"),
        ("POST", "/api/webchat/sessions/{session_id}/close"),
        ("GET", "/api/customers/{customer_id}/syntheses"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/ops/queue"),
        ("POST", "/api/ops/queue"),
        ("GET", "/api/ops/metrics"),
        ("POST", "/api/ops/outages/{outage_id}/restored"),
        ("POST", "/api/notifications/start"),
        ("POST", "/api/handoffs"),
        ("GET", "/api/handoffs/{instance_id}"),
        ("GET", "/api/desk"),
        ("GET", "/api/desk/me"),
        ("POST", "/api/desk/presence"),
        ("GET", "/api/desk/queue"),
        ("GET", "/api/desk/metrics"),
        ("GET", "/api/desk/escalations/{escalation_id}"),
        ("POST", "/api/desk/escalations/{escalation_id}/claim"),
        ("POST", "/api/desk/escalations/{escalation_id}/messages"),
        ("POST", "/api/desk/escalations/{escalation_id}/return"),
        ("POST", "/api/desk/escalations/{escalation_id}/close"),
    }


def test_message_text_is_bounded(document):
    text = document["components"]["schemas"]["SendMessageRequest"]["properties"]["text"]
    assert text["minLength"] == 1 and text["maxLength"] == DEFAULT_MAX_MESSAGE_CHARS
    assert DEFAULT_MAX_MESSAGE_CHARS == 2000
    shorter = openapi_document("https://chat.example.com/", max_message_chars=500)
    for request in ("SendMessageRequest", "DeskMessageRequest"):  # a person's messages have the customer's limit
        assert shorter["components"]["schemas"][request]["properties"]["text"]["maxLength"] == 500
    assert shorter["servers"] == [{"url": "https://chat.example.com"}]


def test_validator_catches_mistakes(document):
    """The live checks are only as good as this validator: make sure it rejects what it should."""
    transcript = {"$ref": "#/components/schemas/Transcript"}
    good = {"session_id": "web_1", "agent": "BillingAgent", "status": "active", "escalation": None,
            "verification": "unverified",
            "turns": [{"role": "customer", "text": "hi", "agent": None, "at": "2025-01-01T00:00:00.000+00:00",
                       "person": False}]}
    validate(document, transcript, good)
    for bad in (
        {**good, "extra": 1},
        {**good, "status": "gone"},
        {k: v for k, v in good.items() if k != "agent"},
        {**good, "turns": [{**good["turns"][0], "role": "bot"}]},
        {**good, "turns": [{**good["turns"][0], "at": "yesterday"}]},
        {**good, "turns": "none"},
        {**good, "verification": "trusted"},
    ):
        with pytest.raises(SchemaError):
            validate(document, transcript, bad)
    request = {"$ref": "#/components/schemas/SendMessageRequest"}
    validate(document, request, {"text": "x" * DEFAULT_MAX_MESSAGE_CHARS})
    for bad in ({"text": ""}, {"text": "   "}, {"text": "x" * (DEFAULT_MAX_MESSAGE_CHARS + 1)}, {}, {"text": 1}):
        with pytest.raises(SchemaError):
            validate(document, request, bad)


# --- the running app ----------------------------------------------------------------------------------------------


class Checker:
    """Sends requests to the live host and checks each answer against the document served there."""

    def __init__(self, client: httpx.AsyncClient, document: dict[str, Any]) -> None:
        self.client = client
        self.document = document
        self.exercised: set[tuple[str, str]] = set()

    async def call(
        self, method: str, route: str, expect: int | set[int], *, session_id: str | None = None,
        token: str | None = None, json_body: Any = None, content: bytes | None = None,
        headers: dict[str, str] | None = None, instance_id: str | None = None, call_id: str | None = None,
        escalation_id: str | None = None, cookie: str | None = None, params: dict[str, str] | None = None,
        outage_id: str | None = None, customer_id: str | None = None,
    ) -> httpx.Response:
        operation = self.document["paths"][route][method.lower()]
        url = route.replace("{session_id}", session_id or "").replace("{instance_id}", instance_id or "")
        url = url.replace("{call_id}", call_id or "").replace("{escalation_id}", escalation_id or "")
        url = url.replace("{outage_id}", outage_id or "").replace("{customer_id}", customer_id or "")
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if cookie is not None:
            headers["Cookie"] = f"AppServiceAuthSession={cookie}"
        if json_body is not None:
            response = await self.client.request(method, url, json=json_body, headers=headers, params=params)
        else:
            response = await self.client.request(method, url, content=content, headers=headers, params=params)
        what = f"{method} {url} -> {response.status_code} {response.text[:200]}"
        assert is_documented(operation, response.status_code), f"undocumented status: {what}"
        expected = {expect} if isinstance(expect, int) else expect
        assert response.status_code in expected, f"expected {sorted(expected)}: {what}"
        self.exercised.add((method, route))

        spec = deref(self.document, operation["responses"].get(str(response.status_code)))
        content_spec = spec.get("content") or {}
        media = response.headers.get("content-type", "").split(";")[0].strip()
        assert media in content_spec, f"{what}: content-type {media!r} is not documented ({sorted(content_spec)})"
        if media == "application/json":
            try:
                validate(self.document, content_spec[media]["schema"], response.json())
            except SchemaError as exc:
                pytest.fail(f"{what}: the body does not match the document: {exc}")
        for name, header in (spec.get("headers") or {}).items():
            if deref(self.document, header).get("required"):
                assert name in response.headers, f"{what}: documented header {name} is missing"
        return response


@pytest.fixture
def start_token(live_local_host):
    """A notifications start token for a customer, signed as the host signs them (its secret in its data dir)."""
    signer = TokenSigner(load_secret("", live_local_host._stdout_path.parent / "data"))
    return lambda customer_id: signer.issue(START_AUDIENCE, 60, cid=customer_id)


@pytest.fixture
async def checker(live_host):
    async with httpx.AsyncClient(base_url=live_host, timeout=30) as client:
        served = await client.get("/api/openapi.json")
        assert served.status_code == 200, served.text
        yield Checker(client, served.json())


async def test_served_document_is_this_document(live_host):
    async with httpx.AsyncClient(base_url=live_host, timeout=30) as client:
        response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    served = response.json()
    limit = served["components"]["schemas"]["SendMessageRequest"]["properties"]["text"]["maxLength"]
    assert served == openapi_document(max_message_chars=limit)


async def test_every_operation_answers_as_documented(checker, start_token):
    c = checker
    limit = c.document["components"]["schemas"]["SendMessageRequest"]["properties"]["text"]["maxLength"]
    sessions, session, messages = (
        "/api/webchat/sessions", "/api/webchat/sessions/{session_id}", "/api/webchat/sessions/{session_id}/messages"
    )

    await c.call("GET", "/api/openapi.json", 200)
    page = await c.call("GET", "/api/webchat", 200)
    assert 'id="log"' in page.text

    # Creating sessions: an empty body and {} both work; anything else malformed is a 400.
    a = (await c.call("POST", sessions, 201)).json()
    b = (await c.call("POST", sessions, 201, json_body={})).json()
    assert a["session_id"] != b["session_id"] and a["token"] != b["token"]
    assert a["replies"] and a["replies"][0]["agent"] == a["agent"]
    for body in (b"{", b"[]", b'"hi"', b'{"nope": 1}', b'{"handoff_token": 5}'):
        await c.call("POST", sessions, 400, content=body, headers={"Content-Type": "application/json"})

    # Messages.
    reply = (await c.call("POST", messages, 200, session_id=a["session_id"], token=a["token"],
                          json_body={"text": "I have a question about my bill"})).json()
    assert reply["replies"], "a customer message gets an answer"
    await c.call("POST", messages, 200, session_id=a["session_id"], token=a["token"], json_body={"text": "x" * limit})
    for body in ({"text": ""}, {"text": "   "}, {}, {"text": 5}, {"text": "x" * (limit + 1)}, {"text": "hi", "x": 1}):
        await c.call("POST", messages, 400, session_id=a["session_id"], token=a["token"], json_body=body)
    await c.call("POST", messages, 400, session_id=a["session_id"], token=a["token"], content=b"{not json",
                 headers={"Content-Type": "application/json"})
    await c.call("POST", messages, 401, session_id=a["session_id"], json_body={"text": "hi"})
    await c.call("POST", messages, 401, session_id=a["session_id"], token="not-a-token", json_body={"text": "hi"})
    forged = a["token"][:-2] + ("AA" if not a["token"].endswith("AA") else "BB")
    await c.call("POST", messages, 401, session_id=a["session_id"], token=forged, json_body={"text": "hi"})
    await c.call("POST", messages, 401, session_id=a["session_id"], json_body={"text": "hi"},
                 headers={"Authorization": f"Basic {a['token']}"})
    await c.call("POST", messages, 403, session_id=a["session_id"], token=b["token"], json_body={"text": "hi"})
    await c.call("POST", messages, {403, 404}, session_id="web_0000", token=a["token"], json_body={"text": "hi"})

    # The transcript: greeting, then each accepted customer turn followed by its replies.
    transcript = (await c.call("GET", session, 200, session_id=a["session_id"], token=a["token"])).json()
    assert transcript["session_id"] == a["session_id"] and transcript["status"] == "active"
    turns = transcript["turns"]
    assert [t["role"] for t in turns][:2] == ["agent", "customer"]
    assert turns[0]["text"] == a["replies"][0]["text"]
    assert turns[1]["text"] == "I have a question about my bill"
    assert sum(t["role"] == "customer" for t in turns) == 2, "refused messages are not in the transcript"
    await c.call("GET", session, 401, session_id=a["session_id"])
    await c.call("GET", session, 401, session_id=a["session_id"], token=forged)
    await c.call("GET", session, 403, session_id=a["session_id"], token=b["token"])
    await c.call("GET", session, {403, 404}, session_id="web_0000", token=a["token"])
    polled = (await c.call("GET", session, 200, session_id=a["session_id"], token=a["token"],
                           params={"after": "0", "wait": "5"})).json()
    assert len(polled["turns"]) == len(turns), "turns beyond `after` exist: the long poll answers at once"
    for bad in ({"after": "-1"}, {"after": "x"}, {"wait": "26"}, {"wait": "nan"}):
        await c.call("GET", session, 400, session_id=a["session_id"], token=a["token"], params=bad)

    # Operators.
    await c.call("GET", "/api/ops/queue", 200)
    await c.call("POST", "/api/ops/queue", 200, json_body={"adjust": {"waiting": 0}})
    for body in ({"set": {"waiting": -1}}, {"nope": 1}, {"set": []}):
        await c.call("POST", "/api/ops/queue", 400, json_body=body)
    await c.call("GET", "/api/ops/metrics", 200, params={"hours": "168"})
    for bad in ({"hours": "0"}, {"hours": "1.5"}, {"hours": "169"}):
        await c.call("GET", "/api/ops/metrics", 400, params=bad)
    restored = "/api/ops/outages/{outage_id}/restored"
    # The second demo outage: the host remembers a restoration, and other tests here report OUT-4471 as active.
    await c.call("POST", restored, 200, outage_id="OUT-4502")  # nobody was promised a text here: none goes
    await c.call("POST", restored, 404, outage_id="OUT-0000")
    await c.call("POST", restored, 400, outage_id="OUT-4502", json_body={"sent": True})

    # Starting a customer's promised notifications (the happy paths run in tests/notifications/): only with the
    # app's start token for that customer, and no body.
    start = "/api/notifications/start"
    await c.call("POST", start, 401)
    await c.call("POST", start, 401, token=a["token"])  # a web chat token is not a start token
    token = start_token(_unverified_claims(a["token"])["cid"])
    assert (await c.call("POST", start, 200, token=token)).json() == {"started": []}  # nothing promised
    await c.call("POST", start, 200, token=token, json_body={})
    await c.call("POST", start, 400, token=token, json_body={"started": ["x"]})
    await c.call("POST", start, 404, token=start_token("cust_nobody"))

    # Calls we place (the happy paths run in tests/outbound/).
    purpose = {"agent": "BillingAgent", "opening": "Hello"}
    await c.call("POST", "/api/calls", 400, json_body={"phone": "+15555550177", "purpose": purpose})  # no consent
    await c.call("POST", "/api/calls", 404, json_body={"customer_id": "cus_nobody", "purpose": purpose})
    await c.call("POST", "/api/calls", 400, json_body={"phone": "+15555550177", "purpose": {"agent": "nobody"}})
    await c.call("POST", "/api/calls", 400, json_body={"phone": "+15555550177", "customer_id": "c", "purpose": purpose})
    await c.call("GET", "/api/calls/placed/{call_id}", 404, call_id="out-nothing")

    # Handoffs (the happy paths run in tests/e2e/test_handoff.py).
    await c.call("POST", "/api/handoffs", 401, json_body={"to_channel": "whatsapp"})
    await c.call("POST", "/api/handoffs", 401, token=a["token"], json_body={"to_channel": "whatsapp"})  # not a call's
    await c.call("GET", "/api/handoffs/{instance_id}", 404, instance_id="handoff-nobody")

    # Calls (the happy paths run in tests/e2e/test_calls.py): every route refuses a caller without the call's token.
    callbacks = "/api/calls/callbacks"
    await c.call("POST", callbacks, 401, json_body=[{"id": "1", "type": "Microsoft.Communication.CallConnected",
                                                     "data": {"callConnectionId": "c", "correlationId": "x"}}])
    await c.call("POST", callbacks, 401, content=b"[]", headers={"Content-Type": "application/json"})
    await c.call("GET", "/api/calls/{call_id}", 401, call_id="call-1")
    await c.call("GET", "/api/calls/{call_id}", 401, call_id="call-1", token=a["token"])  # not the call's token
    await c.call("POST", "/api/calls/{call_id}/hangup", 401, call_id="call-1")
    await c.call("POST", "/api/calls/{call_id}/transfer", 401, call_id="call-1", token="forged.token")

    await _exercise_the_desk(c, a)

    # Closing a chat (last: `a` is closed for good), and how the customer's conversations ended.
    close, syntheses = "/api/webchat/sessions/{session_id}/close", "/api/customers/{customer_id}/syntheses"
    await c.call("POST", close, 401, session_id=b["session_id"])
    await c.call("POST", close, 403, session_id=b["session_id"], token=a["token"])
    await c.call("POST", close, 400, session_id=b["session_id"], token=b["token"], json_body={"why": "done"})
    for _ in range(2):
        closed = (await c.call("POST", close, 200, session_id=b["session_id"], token=b["token"])).json()
        assert closed == {"session_id": b["session_id"], "status": "completed"}
    await c.call("POST", "/api/webchat/sessions/{session_id}/messages", 409, session_id=b["session_id"],
                 token=b["token"], json_body={"text": "still there?"})
    customer = _unverified_claims(b["token"])["cid"]
    assert (await c.call("GET", syntheses, 200, customer_id=customer)).json()["customer_id"] == customer
    await c.call("GET", syntheses, 404, customer_id="cust_nobody")

    documented = {(method.upper(), path) for path, method, _, _ in operations(c.document)}
    assert c.exercised == documented, f"not exercised: {documented - c.exercised}"


async def _exercise_the_desk(c: Checker, customer: dict[str, Any]) -> None:
    """Every desk route: refused without a sign-in, and answering as documented for a supervisor at the desk."""
    me, queue = "/api/desk/me", "/api/desk/queue"
    one, claim, say = ("/api/desk/escalations/{escalation_id}", "/api/desk/escalations/{escalation_id}/claim",
                       "/api/desk/escalations/{escalation_id}/messages")
    back, close = "/api/desk/escalations/{escalation_id}/return", "/api/desk/escalations/{escalation_id}/close"
    assert "<html" in (await c.call("GET", "/api/desk", 200)).text.lower()
    refused = (await c.call("GET", me, 401, token=customer["token"])).json()
    assert refused["sign_in"].startswith("/.auth/login/")
    signed_in = await c.client.get("/.auth/login/dev", params={"agent": "Ada Quinn", "role": "supervisor"})
    assert signed_in.status_code == 302, signed_in.text
    cookie = signed_in.cookies["AppServiceAuthSession"]
    c.client.cookies.clear()

    await c.call("GET", me, 200, cookie=cookie)
    await c.call("POST", "/api/desk/presence", 200, cookie=cookie, json_body={"status": "available"})
    for body in ({}, {"status": "busy"}, {"status": "away", "phone": "555"}, {"status": "away", "x": 1}):
        await c.call("POST", "/api/desk/presence", 400, cookie=cookie, json_body=body)
    version = (await c.call("GET", queue, 200, cookie=cookie)).json()["version"]
    await c.call("GET", queue, 200, cookie=cookie, params={"since": str(version + 1), "wait": "5"})
    await c.call("GET", queue, 400, cookie=cookie, params={"since": "-1"})
    await c.call("GET", "/api/desk/metrics", 200, cookie=cookie)
    for route in (one, claim, say, back, close):
        method = "GET" if route == one else "POST"
        await c.call(method, route, 401, escalation_id="esc_none", json_body={})
        await c.call(method, route, 404, escalation_id="esc_none", cookie=cookie,
                     json_body={"text": "hi"} if route == say else {"disposition": "resolved"} if route == close
                     else None)

    # A customer who asks for a person, taken, talked to, handed back; asked again, taken and closed.
    for ending in ("return", "close"):
        await c.call("POST", "/api/webchat/sessions/{session_id}/messages", 200, session_id=customer["session_id"],
                     token=customer["token"], json_body={"text": "I want to talk to a person"})
        waiting = (await c.call("GET", queue, 200, cookie=cookie)).json()["waiting"]
        escalation_id = next(e["escalation_id"] for e in waiting if e["session_id"] == customer["session_id"])
        await c.call("GET", one, 200, escalation_id=escalation_id, cookie=cookie)
        await c.call("POST", say, 409, escalation_id=escalation_id, cookie=cookie, json_body={"text": "too soon"})
        await c.call("POST", claim, 400, escalation_id=escalation_id, cookie=cookie, json_body={"x": 1})
        await c.call("POST", claim, 200, escalation_id=escalation_id, cookie=cookie)
        await c.call("POST", say, 200, escalation_id=escalation_id, cookie=cookie, json_body={"text": "Hello"})
        await c.call("POST", say, 400, escalation_id=escalation_id, cookie=cookie, json_body={"text": " "})
        if ending == "return":
            await c.call("POST", back, 400, escalation_id=escalation_id, cookie=cookie, json_body={"note": 5})
            await c.call("POST", back, 200, escalation_id=escalation_id, cookie=cookie, json_body={"note": "ok"})
        else:
            await c.call("POST", close, 400, escalation_id=escalation_id, cookie=cookie,
                         json_body={"disposition": "fine"})
            await c.call("POST", close, 200, escalation_id=escalation_id, cookie=cookie,
                         json_body={"disposition": "resolved", "note": "sorted"})
    transcript = (await c.call("GET", "/api/webchat/sessions/{session_id}", 200, session_id=customer["session_id"],
                               token=customer["token"])).json()
    assert transcript["escalation"]["status"] == "closed" and any(t["person"] for t in transcript["turns"])


# --- one source: the models that check requests are the document's schemas --------------------------------------


async def test_a_bad_request_is_refused_naming_the_field_and_what_was_expected(live_host):
    """The 400s come from the same models the document's schemas do: each names the field's path and what it should
    be, and a request the document allows (3.0 for a whole number) is accepted."""
    async with httpx.AsyncClient(base_url=live_host, timeout=30) as client:
        chat = (await client.post("/api/webchat/sessions")).json()
        auth = {"Authorization": f"Bearer {chat['token']}"}
        session = f"/api/webchat/sessions/{chat['session_id']}"
        messages = f"{session}/messages"
        refused = [
            ("POST", messages, {"json": {"text": ""}}, "text: String should have at least 1 character"),
            ("POST", messages, {"json": {"text": "\u2003\x1c"}},
             "text: String should hold something other than whitespace"),
            ("POST", messages, {"json": {"text": "hi", "admin": True, "role": "x"}}, "unknown field(s): admin, role"),
            ("POST", "/api/ops/queue", {"json": {"set": {"waiting": -1}}},
             "set.waiting: Input should be greater than or equal to 0"),
            ("POST", "/api/ops/queue", {"json": {"set": {"waiting": "3"}, "adjust": []}},
             "set.waiting: Input should be a valid integer; adjust: must be an object"),
            ("POST", "/api/webchat/sessions", {"json": {"handoff_token": 5}},
             "handoff_token: Input should be a valid string"),
            ("GET", "/api/ops/metrics", {"params": {"hour": "5"}}, "unknown query parameter(s): hour"),
            ("GET", session, {"params": {"after": "1_0"}}, "after: Input should be a whole number"),
        ]
        for method, path, request, says in refused:
            response = await client.request(method, path, headers=auth if path.startswith(session) else {}, **request)
            print(f"\n{method} {path} -> {response.status_code}: {response.json()['error']}", end="")
            assert (response.status_code, response.json()) == (400, {"error": says})
        accepted = await client.post("/api/ops/queue", json={"adjust": {"waiting": 0.0}})
        assert accepted.status_code == 200, accepted.text


async def test_the_message_limit_follows_the_setting(local_host_factory):
    """WEBCHAT_MAX_MESSAGE_CHARS is what the document says and what the routes hold a customer's message to."""
    host = await asyncio.to_thread(local_host_factory, WEBCHAT_MAX_MESSAGE_CHARS="40")
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as client:
        document = (await client.get("/api/openapi.json")).json()
        for request in ("SendMessageRequest", "DeskMessageRequest"):
            assert document["components"]["schemas"][request]["properties"]["text"]["maxLength"] == 40
        chat = (await client.post("/api/webchat/sessions")).json()
        messages = f"/api/webchat/sessions/{chat['session_id']}/messages"
        auth = {"Authorization": f"Bearer {chat['token']}"}
        too_long = await client.post(messages, json={"text": "x" * 41}, headers=auth)
        assert (too_long.status_code, too_long.json()) == (400, {"error": "text: String should have at most 40 "
                                                                      "characters"})
        assert (await client.post(messages, json={"text": "x" * 40}, headers=auth)).status_code == 200
