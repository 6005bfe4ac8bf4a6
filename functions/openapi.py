"""The OpenAPI 3.1 description of Switchboard's HTTP API, for `GET /api/openapi.json`.

The paths and operations are a declarative table here (and in the openapi_*.py pieces); every body's schema is
generated from the pydantic models in functions/api/, the same models the routes check requests with, so the
document and the checks cannot drift apart. The document is the contract schemathesis tests the app against: it
lists every status a route can answer with on purpose, and every object we shape is closed. The calls
we place name a scenario agent, so the document is built for the scenario's agents (SWITCHBOARD_SCENARIO), as the
checks are.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from functions import openapi_calls, openapi_desk
from functions.api import calls, common, handoff, notifications, ops, outbound, webchat
from functions.api.schemas import component_schemas, query_parameters
from functions.openapi_refs import error_response as _error, json_content as _json, model_content as _body, ref as _ref
from shared.scenario import load_scenario
from shared.settings import SETTINGS, Settings, SettingsError

#: The defaults of WEBCHAT_MAX_MESSAGE_CHARS and SWITCHBOARD_SCENARIO; the running app may be configured otherwise.
DEFAULT_MAX_MESSAGE_CHARS = int(SETTINGS["WEBCHAT_MAX_MESSAGE_CHARS"][0])
DEFAULT_SCENARIO = SETTINGS["SWITCHBOARD_SCENARIO"][0]

_RESPONSE_BODIES = [common.Error, common.OpenAPIDocument, webchat.SessionCreated, webchat.MessageReplies,
                    webchat.Transcript, handoff.HandoffStarted, handoff.HandoffStatus, ops.QueueView,
                    ops.OutageRestored, ops.OpsMetrics, notifications.NotificationsStarted, outbound.PlacedCall,
                    outbound.PlacedCallStatus, webchat.ClosedSession, openapi_desk.models.CustomerSyntheses, *openapi_desk.RESPONSE_BODIES]

_RESPONSES: dict[str, Any] = {
    "BadRequest": _error(
        "Malformed JSON, a body that is not an object, a missing, empty or wrongly typed field, an unknown field, text "
        "over the length limit, or a message to a session that is no longer active. The error names each field that "
        "is wrong and what was expected (`text: String should have at least 1 character`)."
    ),
    "Unauthorized": {
        "description": "The bearer token is missing, malformed, forged or expired.",
        "headers": {"WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}},
        "content": _json(_ref("Error")),
    },
    "Forbidden": _error("The token is valid but belongs to another session."),
    "NotFound": _error("No such session."),
    "Conflict": _error("Other requests changed the same conversation at the same moment too often (send it again), "
                       "or the session has ended (closed, moved to another channel or expired: start a new one)."),
    "TooManyRequests": {
        "description": "This client address started too many sessions lately (WEBCHAT_SESSIONS_PER_ADDRESS per "
        "WEBCHAT_SESSIONS_WINDOW_SECONDS); nothing was created. Retry after the seconds Retry-After gives.",
        "headers": {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
        "content": _json(_ref("Error")),
    },
    "Unavailable": {
        "description": "A backing service (store, session cache, language model) is down or throttling; retry later.",
        "headers": {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
        "content": _json(_ref("Error")),
    },
}
_UNAVAILABLE = {"503": {"$ref": "#/components/responses/Unavailable"}}
_BAD = {"400": {"$ref": "#/components/responses/BadRequest"}}
_SESSION_ID_PARAM: dict[str, Any] = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "The `session_id` returned when the session was created.",
    "schema": {"type": "string", "minLength": 1},
}
_BEARER = [{"webchatToken": []}]
_OPERATORS = [{"functionKey": []}]
#: A retry of the same request under the same key has the first one's effect, once.
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A client-chosen key for this request (a UUID, say).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x21-\\x7e]+$"},
}
_PER_SESSION = {"401": {"$ref": "#/components/responses/Unauthorized"},
                "403": {"$ref": "#/components/responses/Forbidden"},
                "404": {"$ref": "#/components/responses/NotFound"}}


def _ok(status: int, description: str, model: type) -> dict[str, Any]:
    return {str(status): {"description": description, "content": _body(model)}}


def _paths(limit: int, agents: tuple[str, ...]) -> dict[str, Any]:
    message = webchat.send_message_request(limit)
    return {
        **openapi_calls.PATHS,
        "/api/handoffs": {
            "post": {
                "operationId": "startHandoff",
                "summary": "Start (once per session) the channel handoff orchestration.",
                "description": "The media gateway's way in: authenticated with the call's call-control token.",
                "tags": ["handoff"],
                "security": [{"callControlToken": []}],
                "requestBody": {"required": True, "content": _body(handoff.HandoffRequest)},
                "responses": {
                    **_ok(202, "Started, or already started.", handoff.HandoffStarted), **_BAD,
                    "401": _error("The call-control token is missing, forged or expired, or another token."),
                    "403": _error("The token is for another call."),
                    "404": _error("No such customer or session."),
                    **_UNAVAILABLE,
                },
            }
        },
        "/api/handoffs/{instance_id}": {
            "parameters": [{"name": "instance_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "operationId": "getHandoff",
                "summary": "The step a handoff is on, its invitation and its outcome.",
                "tags": ["handoff"],
                "security": _OPERATORS,
                "responses": {**_ok(200, "The handoff.", handoff.HandoffStatus), "404": _error("No such handoff."),
                              **_UNAVAILABLE},
            },
        },
        "/api/ops/queue": {
            "get": {
                "operationId": "getQueue",
                "summary": "The live queue metrics and whether a switch is being offered.",
                "tags": ["ops"],
                "security": _OPERATORS,
                "responses": {**_ok(200, "The metrics.", ops.QueueView), **_UNAVAILABLE},
            },
            "post": {
                "operationId": "updateQueue",
                "summary": "Set or adjust the queue metrics (demos, load tests, declaring an incident).",
                "tags": ["ops"],
                "security": _OPERATORS,
                "requestBody": {"required": True, "content": _body(ops.QueueUpdate)},
                "responses": {**_ok(200, "The metrics after the change.", ops.QueueView), **_BAD, **_UNAVAILABLE},
            },
        },
        "/api/ops/outages/{outage_id}/restored": {
            "parameters": [{"name": "outage_id", "in": "path", "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 100}}],
            "post": {
                "operationId": "outageRestored",
                "summary": "An outage is over: text everyone who was promised a text about it, once.",
                "description": "Called by the outage-management system or an operator. Calling again sends nothing "
                               "twice. No body, or an empty JSON object.",
                "tags": ["ops"],
                "security": _OPERATORS,
                "requestBody": {"required": False, "content": _body(common.NoFields)},
                "responses": {**_ok(200, "What was sent.", ops.OutageRestored), **_BAD,
                              "404": _error("The scenario's data lists no such outage."), **_UNAVAILABLE},
            },
        },
        "/api/ops/metrics": {
            "get": {
                "operationId": "getOpsMetrics",
                "summary": "The design's success figures over a window, each with its n, its target and whether it "
                           "is met.",
                "description": "Context preservation, handoff success, channel-switch time, turns and time to "
                               "resolution, escalations and abandonment, computed from the customer records of the "
                               "sessions opened and the handoffs accepted in the window.",
                "tags": ["ops"],
                "security": _OPERATORS,
                "parameters": query_parameters(ops.MetricsQuery),
                "responses": {**_ok(200, "The figures.", ops.OpsMetrics), **_BAD, **_UNAVAILABLE},
            },
        },
        "/api/notifications/start": {
            "post": {
                "operationId": "startNotifications",
                "summary": "Start the orchestrations of the promises on a customer's record still to keep.",
                "description": "The conversation core's way in, right after a turn records a promise "
                               "(docs/notifications.md): the start token names the customer, and all it can do is "
                               "start what their record already promises, once each. No body, or an empty JSON "
                               "object.",
                "tags": ["notifications"],
                "security": [{"notificationStartToken": []}],
                "requestBody": {"required": False, "content": _body(common.NoFields)},
                "responses": {
                    **_ok(200, "The notifications now running.", notifications.NotificationsStarted), **_BAD,
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "403": _error("The token names no customer."),
                    "404": _error("No such customer."),
                    **_UNAVAILABLE,
                },
            }
        },
        "/api/webchat": {
            "get": {
                "operationId": "getChatPage",
                "summary": "The web chat page.",
                "description": "A self-contained HTML page (no external resources) that talks to the routes below.",
                "tags": ["webchat"],
                "responses": {
                    "200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/api/webchat/sessions": {
            "post": {
                "operationId": "createSession",
                "summary": "Start a web chat session.",
                "description": "Returns the session's id and bearer token, and the first agent's greeting.",
                "tags": ["webchat"],
                "requestBody": {"required": False, "content": _body(webchat.CreateSessionRequest)},
                "responses": {
                    **_ok(201, "The session was created.", webchat.SessionCreated), **_BAD,
                    "401": _error("The handoff token is malformed, forged or expired."),
                    "409": {"$ref": "#/components/responses/Conflict"},
                    "429": {"$ref": "#/components/responses/TooManyRequests"},
                    **_UNAVAILABLE,
                },
            }
        },
        "/api/webchat/sessions/{session_id}": {
            "parameters": [_SESSION_ID_PARAM],
            "get": {
                "operationId": "getSession",
                "summary": "The session's transcript and state; with `after` and `wait`, a long poll.",
                "description": "With `after` (the turns the page has) and `wait`, the answer waits until there are "
                "more turns (a person at the desk wrote), the customer's place with the desk changes, or `wait` "
                "seconds pass. Turns a person wrote carry `person: true` and the person's name as `agent`.",
                "tags": ["webchat"],
                "security": _BEARER,
                "parameters": query_parameters(webchat.TranscriptPoll),
                "responses": {**_ok(200, "The transcript.", webchat.Transcript),
                              "400": _error("`after` or `wait` is not a number in range."), **_PER_SESSION,
                              **_UNAVAILABLE},
            },
        },
        "/api/webchat/sessions/{session_id}/messages": {
            "parameters": [_SESSION_ID_PARAM],
            "post": {
                "operationId": "sendMessage",
                "summary": "Send the customer's message; get the agents' replies.",
                "description": "Send an `Idempotency-Key` to make a retry safe: a message already answered under "
                "that key in this session runs no second turn and gets the replies it earned the first time.",
                "tags": ["webchat"],
                "security": _BEARER,
                "parameters": [{**_IDEMPOTENCY_KEY, "description": (
                    "A client-chosen key for this message, unique in the session (a UUID, say).")}],
                "requestBody": {"required": True, "content": _body(message)},
                "responses": {**_ok(200, "What the agents said.", webchat.MessageReplies), **_BAD, **_PER_SESSION,
                              "409": {"$ref": "#/components/responses/Conflict"}, **_UNAVAILABLE},
            },
        },
        "/api/webchat/sessions/{session_id}/close": {
            "parameters": [_SESSION_ID_PARAM],
            "post": {
                "operationId": "closeSession",
                "summary": "The customer is done: close the session and write what the conversation came to.",
                "description": "Closing starts the post-conversation synthesis (docs/synthesis.md), written once "
                "however often the session is closed; closing again answers the same. A session that already ended "
                "(moved to another channel, expired) keeps how it ended. No body, or an empty JSON object.",
                "tags": ["webchat"],
                "security": _BEARER,
                "requestBody": {"required": False, "content": _body(common.NoFields)},
                "responses": {**_ok(200, "The session is closed.", webchat.ClosedSession), **_BAD, **_PER_SESSION,
                              "409": {"$ref": "#/components/responses/Conflict"}, **_UNAVAILABLE},
            },
        },
        "/api/customers/{customer_id}/syntheses": {
            "parameters": [{"name": "customer_id", "in": "path", "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200}}],
            "get": {
                "operationId": "getSyntheses",
                "summary": "How each of a customer's ended conversations ended: goal, whether met, next action, "
                           "sentiment, promised follow-ups.",
                "tags": ["ops"],
                "security": _OPERATORS,
                "responses": {**_ok(200, "The customer's syntheses, oldest first.",
                                    openapi_desk.models.CustomerSyntheses),
                              "404": _error("No such customer."), **_UNAVAILABLE},
            },
        },
        **openapi_desk.paths(limit),
        "/api/calls": {
            "post": {
                "operationId": "placeCall",
                "summary": "Call a customer: the named agent opens with the given line once a person picks up.",
                "description": "Numbers come from customer records, or in E.164 with consent. An answering machine "
                               "gets a short message without account details. At most 3 calls per customer per hour "
                               "and 60 per minute overall. The same Idempotency-Key places one call.",
                "tags": ["ops"],
                "security": _OPERATORS,
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": {"required": True, "content": _body(outbound.call_request(agents))},
                "responses": {
                    **_ok(201, "The call is ringing.", outbound.PlacedCall),
                    "400": _error("A malformed body (the error names the field), or a number on no customer record "
                                  "without consent to call it in the body."),
                    "404": _error("No customer with this customer_id."),
                    "409": _error("The customer has no phone on record, there is no number to call from, ACS refused "
                                  "the call, or the same key is still placing it."),
                    "429": {"$ref": "#/components/responses/TooManyRequests"},
                    **_UNAVAILABLE,
                },
            },
        },
        "/api/calls/placed/{call_id}": {
            "parameters": [{"name": "call_id", "in": "path", "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 100}}],
            "get": {
                "operationId": "getPlacedCall",
                "summary": "How a call we placed went.",
                "tags": ["ops"],
                "security": _OPERATORS,
                "responses": {**_ok(200, "The call's record.", outbound.PlacedCallStatus),
                              "404": _error("No call placed by us with this id."), **_UNAVAILABLE},
            },
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "getOpenAPI",
                "summary": "This document.",
                "tags": ["meta"],
                "responses": _ok(200, "The OpenAPI 3.1 document.", common.OpenAPIDocument),
            }
        },
    }


def _schemas(limit: int, agents: tuple[str, ...]) -> dict[str, Any]:
    requests = [webchat.CreateSessionRequest, webchat.send_message_request(limit), handoff.HandoffRequest,
                ops.QueueUpdate, common.NoFields, *openapi_desk.REQUEST_BODIES,
                openapi_desk.models.desk_message_request(limit), outbound.call_request(agents)]
    return {**component_schemas(requests, _RESPONSE_BODIES),
            **calls.callback_schemas(), **openapi_calls.SCHEMAS}


@lru_cache(maxsize=4)
def _document(limit: int, agents: tuple[str, ...]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard",
            "version": "0.1.0",
            "summary": "Serverless omnichannel contact-center agent: its HTTP API (web chat, calls, handoffs, the "
            "desk, operators).",
            "description": (
                "A web chat session is a conversation with the scenario's agents. Create one, then send the "
                "customer's messages with the session's bearer token; each answer carries what the agents said and "
                "which agent is active. The call routes serve Call Automation's callbacks and the media gateway; the "
                "Event Grid triggers (IncomingCall, WhatsApp messages) are served by the Functions host's webhook, not "
                "under /api. The desk routes are for the people in the contact center, signed in with the platform's "
                "sign-in. Errors are `{\"error\": \"...\"}` with a 4xx or 5xx status; a 429 or 503 carries "
                "Retry-After; a 400 names each field that is wrong and what was expected."
            ),
        },
        "paths": _paths(limit, agents),
        "components": {
            "schemas": _schemas(limit, agents),
            "responses": {**_RESPONSES, **openapi_desk.RESPONSES},
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
            "securitySchemes": {
                "deskSignIn": openapi_desk.SECURITY_SCHEME,
                "callControlToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The call's control token (`aud=call-control`), which the media gateway mints when "
                    "it accepts the call's media socket; the media socket's own token is refused here.",
                },
                "callbackToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "The per-call token in the callback URL given to Call Automation when the call was "
                    "answered.",
                },
                "functionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "An Azure Functions key (or `?code=`); the local host does not ask for one.",
                },
                "notificationStartToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A start token (`aud=notifications`) the app signs for one customer: the "
                    "conversation core holds it, wherever it runs (a channel's trigger, the media gateway).",
                },
                "webchatToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The `token` returned by `POST /api/webchat/sessions`, valid for that session only.",
                },
            },
        },
        "tags": [
            {"name": "webchat", "description": "Web chat: the chat page and its session API."},
            {"name": "ops", "description": "Operator endpoints (a function key in Azure)."},
            {"name": "calls", "description": "Voice calls: Call Automation callbacks and the gateway's call control."},
            {"name": "handoff", "description": "The Durable channel handoff (a function key in Azure)."},
            {"name": "desk", "description": "The people in the contact center: sign-in, the queue, taking customers."},
            {"name": "notifications", "description": "Notifications kept as promised (the app's own start token)."},
            {"name": "meta", "description": "About the API itself."},
        ],
    }


def openapi_document(server_url: str | None = None, *, max_message_chars: int | None = None,
                     scenario: str | None = None) -> dict[str, Any]:
    """A fresh copy of the document, stating the message-length limit and the agents the app holds requests to.

    `server_url` (the app's base URL, without `/api`: the route paths already start with it) becomes the only
    `servers` entry; without it, clients resolve the paths against the host they fetched the document from.
    `max_message_chars` and `scenario` default to the WEBCHAT_MAX_MESSAGE_CHARS and SWITCHBOARD_SCENARIO settings,
    the same ones the routes read.
    """
    if max_message_chars is None or scenario is None:
        try:
            settings = Settings.from_env()
            configured = settings.webchat_max_message_chars, settings.scenario
        except SettingsError:  # the app itself refuses to start on a bad setting; the document keeps the defaults
            configured = DEFAULT_MAX_MESSAGE_CHARS, DEFAULT_SCENARIO
        max_message_chars = configured[0] if max_message_chars is None else max_message_chars
        scenario = configured[1] if scenario is None else scenario
    agents = tuple(sorted(load_scenario(scenario).agents))
    document = copy.deepcopy(_document(max_message_chars, agents))
    if server_url:
        document["servers"] = [{"url": server_url.rstrip("/") or "/"}]
    return document
