"""The desk's part of the OpenAPI document (functions/openapi.py merges it): its operations and sign-in. The bodies'
schemas come from the models in functions/api/desk.py."""

from __future__ import annotations

from typing import Any

from functions.api import desk as models
from functions.api.schemas import query_parameters
from functions.openapi_refs import error_response as _error, model_content as _body

_SECURITY = [{"deskSignIn": []}]

#: The desk's bodies, for components.schemas: what a person sends, and what the desk answers.
REQUEST_BODIES = [models.PresenceUpdate, models.ClaimRequest, models.HandBackRequest, models.CloseRequest]
RESPONSE_BODIES = [models.DeskMe, models.Presence, models.DeskQueue, models.DeskMetrics, models.DeskContext,
                   models.EscalationResult, models.DeskMessageSaid]

RESPONSES: dict[str, Any] = {
    "DeskUnauthorized": _error("Nobody is signed in (or the sign-in holds no principal the app trusts): `sign_in` "
                               "says where to sign in. A customer's web chat token opens nothing here."),
    "DeskForbidden": _error("The signed-in account holds neither desk role (desk.agent, desk.supervisor)."),
    "EscalationNotFound": _error("No such escalation."),
    "DeskConflict": _error("Someone else has this customer (`taken: Dana has this customer`), the escalation is no "
                           "longer with this person, it is a call (messages go by phone; a call cannot be handed "
                           "back), or calls cannot be put through yet."),
}

_ESCALATION_ID = {
    "name": "escalation_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
    "description": "The `escalation_id` of a queue entry.",
}
_COMMON = {
    "401": {"$ref": "#/components/responses/DeskUnauthorized"},
    "403": {"$ref": "#/components/responses/DeskForbidden"},
    "503": {"$ref": "#/components/responses/Unavailable"},
}
_BAD = {"400": {"$ref": "#/components/responses/BadRequest"}}
_ON_ONE = {"404": {"$ref": "#/components/responses/EscalationNotFound"},
           "409": {"$ref": "#/components/responses/DeskConflict"}}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "A client-chosen key for this message (a UUID, say).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x21-\\x7e]+$"},
}


def _operation(operation_id: str, summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "summary": summary, "tags": ["desk"], "security": _SECURITY, **more,
            "responses": {**responses, **_COMMON}}


def _ok(description: str, model: type) -> dict[str, Any]:
    return {"200": {"description": description, "content": _body(model)}}


def paths(max_message_chars: int) -> dict[str, Any]:
    """The desk's routes; a person's message has the customer's length limit."""
    message = models.desk_message_request(max_message_chars)
    return {
        "/api/desk": {
            "get": {
                "operationId": "getDeskPage",
                "summary": "The desk page, for the people in the contact center.",
                "description": "Loads for anyone; the page asks /api/desk/me who is signed in and offers the sign-in.",
                "tags": ["desk"],
                "responses": {"200": {"description": "The page.",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}},
            }
        },
        "/api/desk/me": {
            "get": _operation("getDeskMe", "Who is signed in, and their presence.", _ok("The person.", models.DeskMe)),
        },
        "/api/desk/presence": {
            "post": _operation(
                "setDeskPresence", "Set yourself available or away, and where transferred calls ring for you.",
                {**_ok("Your presence now.", models.Presence), **_BAD},
                requestBody={"required": True, "content": _body(models.PresenceUpdate)},
            ),
        },
        "/api/desk/queue": {
            "get": _operation(
                "getDeskQueue", "The queue, your customers and your presence: a long poll.",
                {**_ok("The desk now.", models.DeskQueue), **_BAD},
                description="Answers at once without `since` or when the desk's version differs from it; otherwise "
                "when anything the desk shows changes, or after `wait` seconds. Each poll keeps you counted as at the "
                "desk.",
                parameters=query_parameters(models.QueuePoll),
            ),
        },
        "/api/desk/metrics": {
            "get": _operation("getDeskMetrics", "The supervisor's figures (desk.supervisor only; others get 403).",
                              _ok("The figures.", models.DeskMetrics)),
        },
        "/api/desk/escalations/{escalation_id}": {
            "parameters": [_ESCALATION_ID],
            "get": _operation(
                "getDeskEscalation",
                "A customer's whole context: collected facts, summary, every channel's transcript.",
                {**_ok("The context.", models.DeskContext),
                 "404": {"$ref": "#/components/responses/EscalationNotFound"}},
            ),
        },
        "/api/desk/escalations/{escalation_id}/claim": {
            "parameters": [_ESCALATION_ID],
            "post": _operation(
                "claimEscalation", "Take the customer: of people claiming at once exactly one wins.",
                {**_ok("You have the customer.", models.EscalationResult), **_BAD, **_ON_ONE},
                description="The customer is told who joined. A call is put through to your phone or ACS user.",
                requestBody={"required": False, "content": _body(models.ClaimRequest)},
            ),
        },
        "/api/desk/escalations/{escalation_id}/messages": {
            "parameters": [_ESCALATION_ID],
            "post": _operation(
                "sayToCustomer", "Write to the customer you have, on their channel.",
                {**_ok("Saved, and sent on WhatsApp.", models.DeskMessageSaid), **_BAD, **_ON_ONE},
                description="Send an `Idempotency-Key` to make a retry safe: the message is saved (and sent) once.",
                parameters=[_IDEMPOTENCY_KEY],
                requestBody={"required": True, "content": _body(message)},
            ),
        },
        "/api/desk/escalations/{escalation_id}/return": {
            "parameters": [_ESCALATION_ID],
            "post": _operation(
                "handBackEscalation", "Hand the customer back to the AI, who carries on; the customer is told so.",
                {**_ok("Handed back.", models.EscalationResult), **_BAD, **_ON_ONE},
                requestBody={"required": False, "content": _body(models.HandBackRequest)},
            ),
        },
        "/api/desk/escalations/{escalation_id}/close": {
            "parameters": [_ESCALATION_ID],
            "post": _operation(
                "closeEscalation", "Close with a disposition and a note, which go on the customer's record.",
                {**_ok("Closed.", models.EscalationResult), **_BAD, **_ON_ONE},
                requestBody={"required": True, "content": _body(models.CloseRequest)},
            ),
        },
    }


SECURITY_SCHEME: dict[str, Any] = {
    "type": "apiKey",
    "in": "cookie",
    "name": "AppServiceAuthSession",
    "description": "A person signed in at the desk: the session cookie of the function app's built-in authentication "
    "(Microsoft Entra ID, `/.auth/login/aad`), which makes the platform pass the app their principal. Locally "
    "`python -m local` stands in: `/.auth/login/dev?agent=NAME[&role=supervisor]` from this machine sets it.",
}
