"""Call Automation's routes in the OpenAPI document (functions/openapi.py merges it): the callback webhook and the
media gateway's call control. Every body's schema comes from the models the routes check them with: the callbacks'
(`CallEvents`) from functions/api/calls.py, the call-control bodies from functions/api/call_control.py.
"""

from __future__ import annotations

from typing import Any

from functions.api import call_control as control
from functions.api.schemas import component_schemas
from functions.openapi_refs import error_response as _error, json_content as _json, model_content as _body
from functions.openapi_refs import ref as _ref

#: The call-control bodies, for components.schemas: what the gateway sends, and what the app answers.
REQUEST_BODIES = [control.HangUpRequest, control.TransferRequest]
RESPONSE_BODIES = [control.CallStatus, control.CallAction]
SCHEMAS: dict[str, Any] = component_schemas(REQUEST_BODIES, RESPONSE_BODIES)
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


PATHS: dict[str, Any] = {
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
                "200": {"description": "The call.", "content": _body(control.CallStatus)},
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
            "description": "Without a body the conversation is over. With `{\"outcome\": \"abandoned\"}` the "
                           "caller said nothing through the gateway's reprompt and goodbye: the call's record "
                           "keeps `abandoned_at` and its state reads `abandoned`. With `{\"outcome\": "
                           "\"voicemail\"}` an answering machine took a call we placed: the record keeps "
                           "`voicemail_at`.",
            "tags": ["calls"],
            "security": _CALL_CONTROL,
            "requestBody": {"required": False, "content": _body(control.HangUpRequest)},
            "responses": {
                "202": {"description": "Hang-up requested.", "content": _body(control.CallAction)},
                "400": {"$ref": "#/components/responses/BadRequest"},
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
            "requestBody": {"required": False, "content": _body(control.TransferRequest)},
            "responses": {
                "202": {"description": "Transfer requested.", "content": _body(control.CallAction)},
                "400": {"$ref": "#/components/responses/BadRequest"},
                **_CALL_AUTH_ERRORS,
                "409": _error("The call has ended or is not connected, the escalation is not being put through "
                              "to anyone (or that person has no phone to ring), or, without an escalation, the "
                              "scenario has no escalation number."),
                "503": {"$ref": "#/components/responses/Unavailable"},
            },
        },
    },
}
