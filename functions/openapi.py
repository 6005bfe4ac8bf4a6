"""The OpenAPI 3.1 description of Switchboard's HTTP API, as a plain dict.

`OPENAPI` is the document with the default limits; `openapi_document()` returns a fresh copy, optionally with a
`servers` entry and the message-length limit the running app enforces, for `GET /api/openapi.json`. The document is
the contract schemathesis tests the app against, so it lists every status a route can answer with on purpose and
closes every object we shape with `additionalProperties: false`.
"""

from __future__ import annotations

import copy
from typing import Any

from functions import openapi_desk
from functions.openapi_refs import error_response as _error, json_content as _json, ref as _ref
from shared.settings import SETTINGS, Settings, SettingsError

#: The default of WEBCHAT_MAX_MESSAGE_CHARS; the running app may be configured with another limit.
DEFAULT_MAX_MESSAGE_CHARS = int(SETTINGS["WEBCHAT_MAX_MESSAGE_CHARS"][0])

#: "Holds something other than whitespace", for JSON Schema's ECMA regexes and Python alike: the app strips with
#: str.strip(), which also strips \x1c-\x1f and \x85, which ECMA's \s does not count as whitespace.
NOT_BLANK_PATTERN = r"[^\s\x1c-\x1f\x85]"


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every 4xx and 5xx answer of the API: one sentence saying what went wrong.",
        "properties": {
            "error": {"type": "string", "minLength": 1, "examples": ["text must not be empty"]},
            "sign_in": {"type": "string", "description": "On the desk's 401: where to sign in."},
        },
        "required": ["error"],
        "additionalProperties": False,
    },
    "AgentName": {
        "type": "string",
        "minLength": 1,
        "description": "The scenario's name of an agent (CamelCase, e.g. `BillingAgent`, `UtilitiesConcierge`).",
        "examples": ["BillingAgent"],
    },
    "SessionId": {
        "type": "string",
        "minLength": 1,
        "description": "Opaque id of a web chat session.",
    },
    "Reply": {
        "type": "object",
        "description": "One message from an agent.",
        "properties": {"text": {"type": "string"}, "agent": _ref("AgentName")},
        "required": ["text", "agent"],
        "additionalProperties": False,
    },
    "Replies": {
        "type": "array",
        "description": "What the agents said, in order (several when a handoff happened during the turn).",
        "items": _ref("Reply"),
    },
    "CreateSessionRequest": {
        "type": "object",
        "description": "Optional. An empty body or `{}` starts a new conversation.",
        "properties": {
            "handoff_token": {
                "type": "string",
                "minLength": 1,
                "description": "Continue a conversation handed over from another channel (voice, WhatsApp).",
            }
        },
        "additionalProperties": False,
    },
    "SessionCreated": {
        "type": "object",
        "properties": {
            "session_id": _ref("SessionId"),
            "token": {
                "type": "string",
                "minLength": 1,
                "description": "Bearer token for this session's other routes; it expires "
                "(WEBCHAT_TOKEN_TTL_SECONDS).",
            },
            "agent": _ref("AgentName"),
            "replies": {**_ref("Replies"), "description": "The greeting."},
        },
        "required": ["session_id", "token", "agent", "replies"],
        "additionalProperties": False,
    },
    "SendMessageRequest": {
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "minLength": 1,
                "maxLength": DEFAULT_MAX_MESSAGE_CHARS,
                "pattern": NOT_BLANK_PATTERN,
                "description": "What the customer typed; must hold something other than whitespace.",
            }
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    "MessageReplies": {
        "type": "object",
        "properties": {
            "replies": _ref("Replies"),
            "agent": {**_ref("AgentName"), "description": "The agent active after this turn."},
            "escalation": {**_ref("EscalationView"),
                           "description": "Where the customer stands with the desk after this turn, if anywhere."},
        },
        "required": ["replies", "agent", "escalation"],
        "additionalProperties": False,
    },
    "TranscriptTurn": {
        "type": "object",
        "properties": {
            "role": {"type": "string", "enum": ["customer", "agent"]},
            "text": {"type": "string"},
            "agent": {
                "type": ["string", "null"],
                "description": "The agent who spoke, or who was active when the customer spoke.",
            },
            "at": {"type": "string", "format": "date-time"},
            "person": {"type": "boolean", "description": "Written by a person at the desk (`agent` is their name)."},
        },
        "required": ["role", "text", "agent", "at", "person"],
        "additionalProperties": False,
    },
    "Transcript": {
        "type": "object",
        "properties": {
            "session_id": _ref("SessionId"),
            "agent": {**_ref("AgentName"), "description": "The agent active now."},
            "status": {
                "type": "string",
                "enum": ["active", "transferred", "completed", "expired"],
                "description": "`transferred`: the conversation continues on another channel.",
            },
            "turns": {
                "type": "array",
                "items": _ref("TranscriptTurn"),
                "description": "The session's most recent turns, oldest first.",
            },
            "escalation": _ref("EscalationView"),
            "verification": _ref("VerificationLevel"),
        },
        "required": ["session_id", "agent", "status", "turns", "escalation", "verification"],
        "additionalProperties": False,
    },
    "VerificationLevel": {
        "type": "string",
        "enum": ["unverified", "identified", "verified"],
        "description": "How sure we are who the session's customer is. `unverified`: nothing says (a new web chat). "
        "`identified`: we believe it, for one number (caller ID, a text message's sender), which can be spoofed, so "
        "no account data. `verified`: a second factor passed (a one-time code sent to the number on record, or the "
        "scenario's knowledge answers), or the channel authenticates its sender (WhatsApp). A session continued "
        "through a handoff link keeps the level it had. Account data needs `verified`.",
    },
    "OpenAPIDocument": {
        "type": "object",
        "properties": {"openapi": {"type": "string"}, "info": {"type": "object"}, "paths": {"type": "object"}},
        "required": ["openapi", "info", "paths"],
    },
}

_COUNT = {"type": "integer", "minimum": 0, "maximum": 10_000_000}
_SCHEMAS["OutageRestored"] = {
    "type": "object",
    "description": "What telling us an outage is over did: the promised texts sent now, those sent by an earlier call "
                   "(each goes once), and why any could not go (opted out, no number).",
    "properties": {
        "outage": {"type": "string"},
        "sent": _COUNT,
        "already_sent": _COUNT,
        "not_sent": {"type": "object", "additionalProperties": _COUNT,
                     "description": "Reason -> how many customers were not texted for it."},
    },
    "required": ["outage", "sent", "already_sent", "not_sent"],
    "additionalProperties": False,
}
_SCHEMAS["QueueView"] = {
    "type": "object",
    "description": "The live queue metrics, the scenario's thresholds, and whether a phone caller is offered a switch.",
    "properties": {
        "queue": {
            "type": "object",
            "properties": {
                "waiting": {"type": ["integer", "null"]},
                "in_progress": {"type": ["integer", "null"]},
                "estimated_wait_seconds": {"type": ["number", "null"]},
                "incident_customers": {"type": ["integer", "null"]},
                "agents_available": {"type": ["integer", "null"], "description": "People on duty at the desk."},
                "ringing": {"type": ["integer", "null"], "description": "Calls between IncomingCall and our answer."},
                "overridden": {"type": "boolean",
                               "description": "An operator pinned or offset a figure here: not all of it is live."},
                "known": {"type": "boolean", "description": "False when the figures cannot be read: no switch is offered."},
            },
            "required": ["waiting", "in_progress", "estimated_wait_seconds", "incident_customers", "known"],
            "additionalProperties": False,
        },
        "thresholds": {
            "type": "object",
            "properties": {
                "queue_wait_threshold_seconds": {"type": "number"},
                "queue_depth_threshold": {"type": "integer"},
                "mass_outage_threshold": {"type": "integer"},
            },
            "required": ["queue_wait_threshold_seconds", "queue_depth_threshold", "mass_outage_threshold"],
            "additionalProperties": False,
        },
        "figures": {"type": "string", "description": "Whether the figures are live or an operator's override is in "
                    "force (these endpoints are for demos and load tests), and how to go back to live."},
        "switch_offered": {"type": "boolean"},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["queue", "figures", "thresholds", "switch_offered", "reasons"],
    "additionalProperties": False,
}
_SCHEMAS["QueueUpdate"] = {
    "type": "object",
    "description": "Set values, add to the counters, or drop pinned values (estimate, incident).",
    "properties": {
        "set": {
            "type": "object",
            "properties": {
                "waiting": _COUNT,
                "in_progress": _COUNT,
                "estimated_wait_seconds": {"type": "number", "minimum": 0, "maximum": 10_000_000},
                "incident_customers": _COUNT,
            },
            "additionalProperties": False,
        },
        "adjust": {
            "type": "object",
            "properties": {
                "waiting": {"type": "integer", "minimum": -10_000_000, "maximum": 10_000_000},
                "in_progress": {"type": "integer", "minimum": -10_000_000, "maximum": 10_000_000},
            },
            "additionalProperties": False,
        },
        "clear_overrides": {"type": "boolean"},
    },
    "additionalProperties": False,
}

_SCHEMAS["HandoffRequest"] = {
    "type": "object",
    "description": "Start moving a session's customer to another channel (the media gateway's way in).",
    "properties": {
        "customer_id": {"type": "string", "minLength": 1},
        "session_id": {"type": "string", "minLength": 1},
        "to_channel": {"type": "string", "enum": ["whatsapp", "webchat"]},
    },
    "required": ["customer_id", "session_id", "to_channel"],
    "additionalProperties": False,
}
_SCHEMAS["HandoffStarted"] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "status_url": {"type": "string"}},
    "required": ["id", "status_url"],
    "additionalProperties": False,
}
_SCHEMAS["HandoffStatus"] = {
    "type": "object",
    "description": "The orchestration's runtime status and the step it is on (summarising ... waiting, engaged).",
    "properties": {
        "id": {"type": "string"},
        "runtime_status": {"type": "string"},
        "step": {"type": ["string", "null"]},
        "to_channel": {"type": ["string", "null"]},
        "invite": {"type": ["object", "null"], "description": "What the invitation step sent: whether, which template, and `link_sent` for web chat (the link itself goes only to the customer)."},
        "output": {"type": ["object", "null"]},
        "created_time": {"type": ["string", "null"]},
        "last_updated_time": {"type": ["string", "null"]},
    },
    "required": ["id", "runtime_status", "step"],
    "additionalProperties": False,
}

_SCHEMAS["CallStatus"] = {
    "type": "object",
    "description": "What the app knows of a call it answered (from its callbacks), and its voice session's status.",
    "properties": {
        "call_id": {"type": "string", "description": "The call's correlation id."},
        "session_id": {"type": "string"},
        "state": {
            "type": "string",
            "enum": ["answering", "connected", "ended", "transferred", "failed"],
        },
        "connection_id": {"type": ["string", "null"], "description": "The Call Automation call connection id."},
        "media": {"type": "string", "enum": ["streaming", "stopped", "failed"]},
        "media_detail": {"type": "string"},
        "transfer": {"type": "string", "enum": ["requested", "failed"]},
        "transfer_to": {"type": "string"},
        "transfer_detail": {"type": "string"},
        "escalation_id": {"type": "string", "description": "The escalation the call was put through to a person for."},
        "ended_at": {"type": "string", "format": "date-time", "description": "When the call was disconnected."},
        "transferred_at": {"type": "string", "format": "date-time",
                           "description": "When the transfer to a person was accepted."},
        "failed_at": {"type": "string", "format": "date-time", "description": "When answering or connecting failed."},
        "updated_at": {"type": "string", "format": "date-time"},
        "session_status": {
            "type": ["string", "null"],
            "enum": ["active", "transferred", "completed", "expired", None],
            "description": "The voice session's status on the customer record; null if it cannot be found.",
        },
    },
    "required": ["call_id", "session_id", "updated_at", "session_status"],
    "additionalProperties": False,
}
_SCHEMAS["CallAction"] = {
    "type": "object",
    "description": "The request was passed to Call Automation; its outcome arrives as callbacks.",
    "properties": {
        "call_id": {"type": "string"},
        "action": {"type": "string", "enum": ["hangup", "transfer"]},
        "target": {"type": "string",
                   "description": "Where the call is being transferred: a phone number or an ACS user id."},
        "escalation_id": {"type": "string", "description": "The escalation the caller is put through for."},
    },
    "required": ["call_id", "action"],
    "additionalProperties": False,
}
_NOT_BLANK = {"type": "string", "minLength": 1, "pattern": NOT_BLANK_PATTERN}
_SCHEMAS["CallEvents"] = {
    "type": "array",
    "minItems": 1,
    "description": "Call Automation callbacks: CloudEvents 1.0 of type `Microsoft.Communication.*` (one object is "
    "accepted too). At most 256 KB. Call Automation shapes these, so other attributes are accepted and ignored.",
    "items": {
        "type": "object",
        "properties": {
            "id": _NOT_BLANK,
            "source": {"type": "string"},
            "specversion": {"type": "string"},
            "type": {"type": "string", "pattern": r"^Microsoft\.Communication\.."},
            "subject": {"type": "string"},
            "time": {"type": "string"},
            "datacontenttype": {"type": "string"},
            "data": {
                "type": "object",
                "description": "The event's data; the app reads these fields (and `resultInformation` and "
                "`mediaStreamingUpdate` where present).",
                "properties": {"callConnectionId": _NOT_BLANK, "correlationId": _NOT_BLANK},
                "required": ["callConnectionId", "correlationId"],
            },
        },
        "required": ["id", "type", "data"],
    },
}

_RESPONSES: dict[str, Any] = {
    "BadRequest": _error(
        "Malformed JSON, a body that is not an object, a missing, empty or wrongly typed field, an unknown field, text "
        "over the length limit, or a message to a session that is no longer active."
    ),
    "Unauthorized": {
        "description": "The bearer token is missing, malformed, forged or expired.",
        "headers": {"WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}},
        "content": _json(_ref("Error")),
    },
    "Forbidden": _error("The token is valid but belongs to another session."),
    "NotFound": _error("No such session."),
    "Conflict": _error("Other requests changed the same conversation at the same moment too often; send it again."),
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

_SESSION_ID_PARAM: dict[str, Any] = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "The `session_id` returned when the session was created.",
    "schema": _ref("SessionId"),
}

_BEARER = [{"webchatToken": []}]
_CALL_CONTROL = [{"callControlToken": []}]
_CALL_ID_PARAM: dict[str, Any] = {
    "name": "call_id",
    "in": "path",
    "required": True,
    "description": "The call's correlation id (the `call` claim of the call-control token).",
    "schema": {"type": "string", "minLength": 1},
}
_CALL_AUTH_ERRORS: dict[str, Any] = {
    "401": _error("The call-control token is missing, forged or expired, or another token (the media socket's)."),
    "403": _error("The token is for another call."),
    "404": _error("No such call (never answered, or forgotten after the token's lifetime)."),
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Switchboard",
        "version": "0.1.0",
        "summary": "Serverless omnichannel contact-center agent: its HTTP API (web chat, calls, handoffs, the desk, "
        "operators).",
        "description": (
            "A web chat session is a conversation with the scenario's agents. Create one, then send the customer's "
            "messages with the session's bearer token; each answer carries what the agents said and which agent is "
            "active. The call routes serve Call Automation's callbacks and the media gateway; the Event Grid triggers "
            "(IncomingCall, WhatsApp messages) are served by the Functions host's webhook, not under /api. The desk "
            "routes are for the people in the contact center, signed in with the platform's sign-in. Errors are "
            "`{\"error\": \"...\"}` with a 4xx or 5xx status; a 429 or 503 carries Retry-After."
        ),
    },
    "paths": {
        "/api/calls/callbacks": {
            "post": {
                "operationId": "callCallbacks",
                "summary": "Call Automation's callback webhook: follow a call through its events.",
                "description": (
                    "ACS posts each call's events to the callback URL given when the call was answered; its `token` "
                    "names the call. In Azure the request must also carry ACS's signed JWT (Authorization: Bearer). "
                    "Each event is applied once, however often it is delivered."
                ),
                "tags": ["calls"],
                "security": [{"callbackToken": []}],
                "requestBody": {"required": True, "content": _json(_ref("CallEvents"))},
                "responses": {
                    "204": {"description": "The events were applied (or had been already)."},
                    "400": _error("Not JSON, not a non-empty array of Call Automation events, a missing field, or "
                                  "over 256 KB."),
                    "401": _error("The callback token is missing, forged or expired (or ACS's JWT is missing or "
                                  "invalid)."),
                    "403": _error("An event belongs to another call than the callback URL's."),
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        },
        "/api/calls/{call_id}": {
            "parameters": [_CALL_ID_PARAM],
            "get": {
                "operationId": "getCall",
                "summary": "What the app knows of a call: its state, media and voice session.",
                "tags": ["calls"],
                "security": _CALL_CONTROL,
                "responses": {
                    "200": {"description": "The call.", "content": _json(_ref("CallStatus"))},
                    **_CALL_AUTH_ERRORS,
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            },
        },
        "/api/calls/{call_id}/hangup": {
            "parameters": [_CALL_ID_PARAM],
            "post": {
                "operationId": "hangUpCall",
                "summary": "End the call (the media gateway's way to finish a conversation).",
                "tags": ["calls"],
                "security": _CALL_CONTROL,
                "responses": {
                    "202": {"description": "Hang-up requested.", "content": _json(_ref("CallAction"))},
                    **_CALL_AUTH_ERRORS,
                    "409": _error("The call has already ended, or is not connected yet."),
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            },
        },
        "/api/calls/{call_id}/transfer": {
            "parameters": [_CALL_ID_PARAM],
            "post": {
                "operationId": "transferCall",
                "summary": "Transfer the call to a person: the one the desk routed an escalation to, or the "
                           "scenario's escalation number.",
                "description": "With `escalation_id`, the call rings the phone number or ACS user of the person "
                               "the desk routed that escalation of this caller to, with the escalation id in the "
                               "call's custom context (SIP header `X-MS-Custom-Switchboard-Escalation`, VoIP header "
                               "`switchboard-escalation`); asking again for the same escalation rings nobody twice. "
                               "Without a body, the call goes to the scenario's escalation number.",
                "tags": ["calls"],
                "security": _CALL_CONTROL,
                "requestBody": {"required": False, "content": _json({
                    "type": "object",
                    "properties": {"escalation_id": {"type": "string", "minLength": 1, "maxLength": 100,
                                                     "pattern": NOT_BLANK_PATTERN}},
                    "additionalProperties": False,
                })},
                "responses": {
                    "202": {"description": "Transfer requested.", "content": _json(_ref("CallAction"))},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    **_CALL_AUTH_ERRORS,
                    "409": _error("The call has ended or is not connected, the escalation is not being put through "
                                  "to anyone (or that person has no phone to ring), or, without an escalation, the "
                                  "scenario has no escalation number."),
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            },
        },
        "/api/handoffs": {
            "post": {
                "operationId": "startHandoff",
                "summary": "Start (once per session) the channel handoff orchestration.",
                "description": "The media gateway's way in: authenticated with the call's call-control token.",
                "tags": ["handoff"],
                "security": [{"callControlToken": []}],
                "requestBody": {"required": True, "content": _json(_ref("HandoffRequest"))},
                "responses": {
                    "202": {"description": "Started, or already started.", "content": _json(_ref("HandoffStarted"))},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "401": _error("The call-control token is missing, forged or expired, or another token."),
                    "403": _error("The token is for another call."),
                    "404": _error("No such customer or session."),
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        },
        "/api/handoffs/{instance_id}": {
            "parameters": [{"name": "instance_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "operationId": "getHandoff",
                "summary": "The step a handoff is on, its invitation and its outcome.",
                "tags": ["handoff"],
                "security": [{"functionKey": []}],
                "responses": {
                    "200": {"description": "The handoff.", "content": _json(_ref("HandoffStatus"))},
                    "404": _error("No such handoff."),
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            },
        },
        "/api/ops/queue": {
            "get": {
                "operationId": "getQueue",
                "summary": "The live queue metrics and whether a switch is being offered.",
                "tags": ["ops"],
                "security": [{"functionKey": []}],
                "responses": {
                    "200": {"description": "The metrics.", "content": _json(_ref("QueueView"))},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            },
            "post": {
                "operationId": "updateQueue",
                "summary": "Set or adjust the queue metrics (demos, load tests, declaring an incident).",
                "tags": ["ops"],
                "security": [{"functionKey": []}],
                "requestBody": {"required": True, "content": _json(_ref("QueueUpdate"))},
                "responses": {
                    "200": {"description": "The metrics after the change.", "content": _json(_ref("QueueView"))},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
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
                "security": [{"functionKey": []}],
                "responses": {
                    "200": {"description": "What was sent.", "content": _json(_ref("OutageRestored"))},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "404": _error("The scenario's data lists no such outage."),
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            },
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
                "requestBody": {"required": False, "content": _json(_ref("CreateSessionRequest"))},
                "responses": {
                    "201": {"description": "The session was created.", "content": _json(_ref("SessionCreated"))},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "401": _error("The handoff token is malformed, forged or expired."),
                    "409": {"$ref": "#/components/responses/Conflict"},
                    "429": {"$ref": "#/components/responses/TooManyRequests"},
                    "503": {"$ref": "#/components/responses/Unavailable"},
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
                "parameters": openapi_desk.WEBCHAT_POLL_PARAMETERS,
                "responses": {
                    "200": {"description": "The transcript.", "content": _json(_ref("Transcript"))},
                    "400": _error("`after` or `wait` is not a number in range."),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "403": {"$ref": "#/components/responses/Forbidden"},
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
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
                "parameters": [{
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "A client-chosen key for this message, unique in the session (a UUID, say).",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x21-\\x7e]+$"},
                }],
                "requestBody": {"required": True, "content": _json(_ref("SendMessageRequest"))},
                "responses": {
                    "200": {"description": "What the agents said.", "content": _json(_ref("MessageReplies"))},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "403": {"$ref": "#/components/responses/Forbidden"},
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "409": {"$ref": "#/components/responses/Conflict"},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            },
        },
        **openapi_desk.PATHS,
        "/api/openapi.json": {
            "get": {
                "operationId": "getOpenAPI",
                "summary": "This document.",
                "tags": ["meta"],
                "responses": {
                    "200": {"description": "The OpenAPI 3.1 document.", "content": _json(_ref("OpenAPIDocument"))}
                },
            }
        },
    },
    "components": {
        "schemas": {**_SCHEMAS, **openapi_desk.SCHEMAS},
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
                "description": "The call's control token (`aud=call-control`), which the media gateway mints when it "
                "accepts the call's media socket; the media socket's own token is refused here.",
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
            "webchatToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "The `token` returned by `POST /api/webchat/sessions`, valid for that session only.",
            }
        },
    },
    "tags": [
        {"name": "webchat", "description": "Web chat: the chat page and its session API."},
        {"name": "ops", "description": "Operator endpoints (a function key in Azure)."},
        {"name": "calls", "description": "Voice calls: Call Automation callbacks and the gateway's call control."},
        {"name": "handoff", "description": "The Durable channel handoff (a function key in Azure)."},
        {"name": "desk", "description": "The people in the contact center: sign-in, the queue, taking customers."},
        {"name": "meta", "description": "About the API itself."},
    ],
}


def openapi_document(server_url: str | None = None, *, max_message_chars: int | None = None) -> dict[str, Any]:
    """A fresh copy of the document, stating the message-length limit the app enforces.

    `server_url` (the app's base URL, without `/api`: the route paths already start with it) becomes the only
    `servers` entry; without it, clients resolve the paths against the host they fetched the document from.
    `max_message_chars` defaults to the WEBCHAT_MAX_MESSAGE_CHARS setting, the same one the web chat routes read.
    """
    document = copy.deepcopy(OPENAPI)
    if server_url:
        document["servers"] = [{"url": server_url.rstrip("/") or "/"}]
    if max_message_chars is None:
        try:
            max_message_chars = Settings.from_env().webchat_max_message_chars
        except SettingsError:  # the app itself refuses to start on a bad setting; the document keeps the default
            max_message_chars = DEFAULT_MAX_MESSAGE_CHARS
    for request in ("SendMessageRequest", "DeskMessageRequest"):  # a person's messages have the customer's limit
        document["components"]["schemas"][request]["properties"]["text"]["maxLength"] = max_message_chars
    return document
