"""The desk's part of the OpenAPI document (functions/openapi.py merges it): its routes, bodies and sign-in.

Kept beside the document rather than in it so the desk's contract reads in one place. The same rules hold: every
status a route can answer with is listed, and every object the desk shapes is closed, except the supervisor's
figures, a map of numbers the desk may grow.
"""

from __future__ import annotations

from typing import Any

from functions.openapi_refs import error_response as _error, json_content as _json, ref as _ref

from functions.desk import DISPOSITIONS, MAX_NOTE_CHARS
from shared.desk import MAX_POLL_SECONDS
from shared.models import EscalationStatus

_SECURITY = [{"deskSignIn": []}]
#: Query values the desk and the chat page accept for a version or a turn count.
MAX_COUNTER = 10**15


_STATUSES = [s.value for s in EscalationStatus]
_TEXT = {"type": "string"}
_MAYBE_TEXT = {"type": ["string", "null"]}
_COUNT = {"type": "integer", "minimum": 0}

SCHEMAS: dict[str, Any] = {
    "DeskAgent": {
        "type": "object",
        "description": "The person signed in, as the sign-in says.",
        "properties": {
            "agent_id": {"type": "string", "description": "Their Entra object id (locally `dev-<name>`)."},
            "name": _TEXT,
            "supervisor": {"type": "boolean", "description": "Holds the desk.supervisor role."},
        },
        "required": ["agent_id", "name", "supervisor"],
        "additionalProperties": False,
    },
    "Presence": {
        "type": "object",
        "description": "Whether a person is taking customers, and where transferred calls ring for them.",
        "properties": {
            "agent_id": _TEXT,
            "name": _TEXT,
            "status": {"type": "string", "enum": ["available", "away"],
                       "description": "`away` too when their page has not polled for a while."},
            "phone": {"type": "string", "description": "E.164, or empty."},
            "acs_user": {"type": "string", "description": "An ACS user id, or empty."},
            "claims": {**_COUNT, "description": "Customers they have now."},
        },
        "required": ["agent_id", "name", "status", "phone", "acs_user", "claims"],
        "additionalProperties": False,
    },
    "DeskMe": {
        "type": "object",
        "properties": {
            "agent": _ref("DeskAgent"),
            "presence": _ref("Presence"),
            "sign_in": {"type": "string", "description": "Where to sign in again (the platform's sign-in)."},
            "sign_out": {"type": "string", "description": "Where to sign out."},
        },
        "required": ["agent", "presence", "sign_in", "sign_out"],
        "additionalProperties": False,
    },
    "PresenceUpdate": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["available", "away"]},
            "phone": {"type": "string", "maxLength": 16, "pattern": r"^(\+[1-9][0-9]{6,14})?$",
                      "description": "Where transferred calls ring for this person (E.164); empty clears it."},
            "acs_user": {"type": "string", "maxLength": 256, "pattern": "^(8:[\\x21-\\x7e]+)?$",
                         "description": "Or an ACS user id (8:acs:...) calls are put through to; empty clears it."},
        },
        "required": ["status"],
        "additionalProperties": False,
    },
    "WaitingEntry": {
        "type": "object",
        "description": "A customer waiting for a person, as the queue shows them.",
        "properties": {
            "escalation_id": _TEXT,
            "customer_id": _TEXT,
            "session_id": _TEXT,
            "channel": {"type": "string", "description": "webchat, whatsapp, voice, ..."},
            "reason": {"type": "string", "description": "Why a person is needed, in words a person reads."},
            "summary": {"type": "string", "description": "What the AI did so far, in a line or two."},
            "customer_name": {"type": "string", "description": "Empty when the customer did not say."},
            "created_at": {"type": "number", "description": "When they asked (seconds since the epoch)."},
            "status": {"type": "string", "enum": _STATUSES},
            "agent_id": _MAYBE_TEXT,
            "agent_name": _MAYBE_TEXT,
            "position": {"type": "integer", "minimum": 1, "description": "1 = next."},
            "waiting_seconds": {"type": "number", "minimum": 0},
        },
        "required": ["escalation_id", "customer_id", "session_id", "channel", "reason", "summary", "customer_name",
                     "created_at", "status", "position", "waiting_seconds"],
        "additionalProperties": False,
    },
    "HeldEntry": {
        "type": "object",
        "description": "A customer the person has now (the queue's copy; the record holds the truth).",
        "properties": {
            "escalation_id": _TEXT,
            "customer_id": _TEXT,
            "session_id": _TEXT,
            "channel": _TEXT,
            "reason": _TEXT,
            "summary": _TEXT,
            "customer_name": _TEXT,
            "created_at": {"type": "number"},
            "status": {"type": "string", "enum": _STATUSES},
            "agent_id": _MAYBE_TEXT,
            "agent_name": _MAYBE_TEXT,
        },
        "required": ["status"],
        "additionalProperties": False,
    },
    "DeskMetrics": {
        "type": "object",
        "description": "The supervisor's figures, each a number or null (no data yet): the queue now (`waiting`, "
        "`calls_on_hold`, `longest_wait_seconds`, `agents_available`, `agents_free`, `estimated_wait_seconds`), the "
        "last hour (`escalations_last_hour`, `claimed_last_hour`, `abandoned_last_hour`, `abandonment_rate`, "
        "`average_handle_seconds`, `handle_seconds_in_use`), the last day's handoffs (`handoffs_started_last_day`, "
        "`handoffs_engaged_last_day`, `handoff_success_rate`, `switch_seconds_median`) and `at` (when, in seconds "
        "since the epoch). docs/desk.md says what each means.",
        "additionalProperties": {"type": ["number", "null"]},
    },
    "DeskQueue": {
        "type": "object",
        "properties": {
            "version": {**_COUNT, "description": "Send it back as `since` to wait for the next change."},
            "waiting": {"type": "array", "items": _ref("WaitingEntry"), "description": "Longest waiting first."},
            "mine": {"type": "array", "items": _ref("HeldEntry")},
            "presence": _ref("Presence"),
            "metrics": {**_ref("DeskMetrics"), "description": "Supervisors only."},
        },
        "required": ["version", "waiting", "mine", "presence"],
        "additionalProperties": False,
    },
    "Escalation": {
        "type": "object",
        "description": "A customer handed to the desk, as their record remembers it.",
        "properties": {
            "escalation_id": _TEXT,
            "session_id": _TEXT,
            "channel": _TEXT,
            "reason": _TEXT,
            "summary": _TEXT,
            "status": {"type": "string", "enum": _STATUSES},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "agent_id": _MAYBE_TEXT,
            "agent_name": _MAYBE_TEXT,
            "claimed_at": _MAYBE_TEXT,
            "ended_at": _MAYBE_TEXT,
            "disposition": {"type": ["string", "null"], "description": "How a person closed it."},
            "note": {"type": ["string", "null"], "description": "The person's note for the record."},
            "callback": {"type": ["string", "null"], "description": "The number a callback was asked on."},
        },
        "required": ["escalation_id", "session_id", "channel", "reason", "summary", "status", "created_at",
                     "updated_at", "agent_id", "agent_name", "claimed_at", "ended_at", "disposition", "note",
                     "callback"],
        "additionalProperties": False,
    },
    "EscalationResult": {
        "type": "object",
        "properties": {"escalation": _ref("Escalation")},
        "required": ["escalation"],
        "additionalProperties": False,
    },
    "DeskSession": {
        "type": "object",
        "description": "One of the customer's sessions, on any channel, with its transcript.",
        "properties": {
            "session_id": _TEXT,
            "channel": _TEXT,
            "status": _TEXT,
            "started_at": {"type": "string", "format": "date-time"},
            "verification": _ref("VerificationLevel"),
            "turns": {"type": "array", "items": _ref("TranscriptTurn")},
        },
        "required": ["session_id", "channel", "status", "started_at", "verification", "turns"],
        "additionalProperties": False,
    },
    "DeskContext": {
        "type": "object",
        "description": "Everything a person needs to help without asking the customer again.",
        "properties": {
            "escalation": _ref("Escalation"),
            "customer": {
                "type": "object",
                "properties": {
                    "customer_id": _TEXT,
                    "collected": {"type": "object", "additionalProperties": {"type": "string"},
                                  "description": "What the customer told us (account number, address, ...)."},
                    "identities": {"type": "array", "items": _TEXT, "description": "phone, webchat, ..."},
                },
                "required": ["customer_id", "collected", "identities"],
                "additionalProperties": False,
            },
            "summary": {"type": "string", "description": "The AI's summary of the customer's conversations."},
            "sessions": {"type": "array", "items": _ref("DeskSession"), "description": "Oldest first."},
            "history": {"type": "array", "items": _ref("Escalation"),
                        "description": "The customer's other escalations: earlier dispositions and notes."},
            "audit": {"type": "array", "items": _ref("DeskAuditEntry"),
                      "description": "Each verification step and each disclosure of account data on the customer's "
                      "record, oldest first (the latest 200). Codes and answers are never on the record."},
        },
        "required": ["escalation", "customer", "summary", "sessions", "history", "audit"],
        "additionalProperties": False,
    },
    "DeskAuditEntry": {
        "type": "object",
        "description": "What was disclosed, or what happened in a verification, to whom, where and when.",
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "event": {"type": "string", "description": "`disclosed` (a tool showed account data), or a verification "
                      "step: `verification_requested`, `_wrong`, `_verified`, `_locked`, `_expired`."},
            "channel": _TEXT,
            "session_id": _TEXT,
            "tool": {"type": ["string", "null"], "description": "The tool that showed the data, or asked for it."},
            "method": {"type": ["string", "null"], "description": "`code` or `knowledge`, for verification steps."},
            "refused": {"type": ["string", "null"], "description": "Why no code went (`locked`, `unavailable`, "
                        "`too_many`), when none did."},
            "level": {**_ref("VerificationLevel"), "description": "The session's level after the step."},
            "who": {"type": ["string", "null"], "description": "The last four digits of the number the session "
                    "stood for (`…0100`); null for a visitor nobody knew."},
            "shown_by": {"type": ["string", "null"], "description": "How the session showed it: `voice sender` "
                         "(caller ID), `whatsapp sender`, `code`, `knowledge`, `handoff`."},
        },
        "required": ["at", "event", "channel", "session_id", "tool", "method", "refused", "level", "who", "shown_by"],
        "additionalProperties": False,
    },
    "ClaimRequest": {
        "type": "object",
        "description": "Empty: a claim takes no fields.",
        "additionalProperties": False,
    },
    "DeskMessageRequest": {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"[^\s\x1c-\x1f\x85]",
                     "description": "What the person writes to the customer."},
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    "DeskMessageSaid": {
        "type": "object",
        "properties": {"turn": {**_ref("TranscriptTurn"), "description": "The message as the customer sees it."}},
        "required": ["turn"],
        "additionalProperties": False,
    },
    "HandBackRequest": {
        "type": "object",
        "description": "Optional: an empty body hands back without a note.",
        "properties": {"note": {"type": "string", "maxLength": MAX_NOTE_CHARS,
                                "description": "For the record (the customer does not see it)."}},
        "additionalProperties": False,
    },
    "CloseRequest": {
        "type": "object",
        "properties": {
            "disposition": {"type": "string", "enum": list(DISPOSITIONS)},
            "note": {"type": "string", "maxLength": MAX_NOTE_CHARS, "description": "For the record."},
        },
        "required": ["disposition"],
        "additionalProperties": False,
    },
    "EscalationView": {
        "type": ["object", "null"],
        "description": "Where the customer stands with the desk: the latest escalation asked from this session, or "
        "null if they never asked for a person here.",
        "properties": {
            "status": {"type": "string", "enum": _STATUSES},
            "agent_name": {"type": ["string", "null"], "description": "The person who has (or had) them."},
            "position": {"type": ["integer", "null"], "minimum": 1, "description": "Their place while waiting."},
        },
        "required": ["status", "agent_name", "position"],
        "additionalProperties": False,
    },
}

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


def _operation(operation_id: str, summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "summary": summary, "tags": ["desk"], "security": _SECURITY, **more,
            "responses": {**responses, **_COMMON}}


PATHS: dict[str, Any] = {
    "/api/desk": {
        "get": {
            "operationId": "getDeskPage",
            "summary": "The desk page, for the people in the contact center.",
            "description": "Loads for anyone; the page asks /api/desk/me who is signed in and offers the sign-in.",
            "tags": ["desk"],
            "responses": {"200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }
    },
    "/api/desk/me": {
        "get": _operation("getDeskMe", "Who is signed in, and their presence.",
                          {"200": {"description": "The person.", "content": _json(_ref("DeskMe"))}}),
    },
    "/api/desk/presence": {
        "post": _operation(
            "setDeskPresence", "Set yourself available or away, and where transferred calls ring for you.",
            {"200": {"description": "Your presence now.", "content": _json(_ref("Presence"))}, **_BAD},
            requestBody={"required": True, "content": _json(_ref("PresenceUpdate"))},
        ),
    },
    "/api/desk/queue": {
        "get": _operation(
            "getDeskQueue", "The queue, your customers and your presence: a long poll.",
            {"200": {"description": "The desk now.", "content": _json(_ref("DeskQueue"))}, **_BAD},
            description="Answers at once without `since` or when the desk's version differs from it; otherwise when "
            "anything the desk shows changes, or after `wait` seconds. Each poll keeps you counted as at the desk.",
            parameters=[
                {"name": "since", "in": "query", "required": False,
                 "description": "The `version` of the last answer.",
                 "schema": {"type": "integer", "minimum": 0, "maximum": MAX_COUNTER}},
                {"name": "wait", "in": "query", "required": False,
                 "description": "Seconds to hold the poll for a change (default 0).",
                 "schema": {"type": "number", "minimum": 0, "maximum": MAX_POLL_SECONDS}},
            ],
        ),
    },
    "/api/desk/metrics": {
        "get": _operation("getDeskMetrics", "The supervisor's figures (desk.supervisor only; others get 403).",
                          {"200": {"description": "The figures.", "content": _json(_ref("DeskMetrics"))}}),
    },
    "/api/desk/escalations/{escalation_id}": {
        "parameters": [_ESCALATION_ID],
        "get": _operation(
            "getDeskEscalation", "A customer's whole context: collected facts, summary, every channel's transcript.",
            {"200": {"description": "The context.", "content": _json(_ref("DeskContext"))},
             "404": {"$ref": "#/components/responses/EscalationNotFound"}},
        ),
    },
    "/api/desk/escalations/{escalation_id}/claim": {
        "parameters": [_ESCALATION_ID],
        "post": _operation(
            "claimEscalation", "Take the customer: of people claiming at once exactly one wins.",
            {"200": {"description": "You have the customer.", "content": _json(_ref("EscalationResult"))},
             **_BAD, **_ON_ONE},
            description="The customer is told who joined. A call is put through to your phone or ACS user.",
            requestBody={"required": False, "content": _json(_ref("ClaimRequest"))},
        ),
    },
    "/api/desk/escalations/{escalation_id}/messages": {
        "parameters": [_ESCALATION_ID],
        "post": _operation(
            "sayToCustomer", "Write to the customer you have, on their channel.",
            {"200": {"description": "Saved, and sent on WhatsApp.", "content": _json(_ref("DeskMessageSaid"))},
             **_BAD, **_ON_ONE},
            description="Send an `Idempotency-Key` to make a retry safe: the message is saved (and sent) once.",
            parameters=[{
                "name": "Idempotency-Key", "in": "header", "required": False,
                "description": "A client-chosen key for this message (a UUID, say).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x21-\\x7e]+$"},
            }],
            requestBody={"required": True, "content": _json(_ref("DeskMessageRequest"))},
        ),
    },
    "/api/desk/escalations/{escalation_id}/return": {
        "parameters": [_ESCALATION_ID],
        "post": _operation(
            "handBackEscalation", "Hand the customer back to the AI, who carries on; the customer is told so.",
            {"200": {"description": "Handed back.", "content": _json(_ref("EscalationResult"))}, **_BAD, **_ON_ONE},
            requestBody={"required": False, "content": _json(_ref("HandBackRequest"))},
        ),
    },
    "/api/desk/escalations/{escalation_id}/close": {
        "parameters": [_ESCALATION_ID],
        "post": _operation(
            "closeEscalation", "Close with a disposition and a note, which go on the customer's record.",
            {"200": {"description": "Closed.", "content": _json(_ref("EscalationResult"))}, **_BAD, **_ON_ONE},
            requestBody={"required": True, "content": _json(_ref("CloseRequest"))},
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

#: The chat page's long poll on GET /api/webchat/sessions/{session_id}.
WEBCHAT_POLL_PARAMETERS: list[dict[str, Any]] = [
    {"name": "after", "in": "query", "required": False,
     "description": "The number of turns the page has: with `wait`, the answer waits for more (a person writing).",
     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_COUNTER}},
    {"name": "wait", "in": "query", "required": False,
     "description": "Seconds to hold the poll for new turns or a change in the customer's place (default 0).",
     "schema": {"type": "number", "minimum": 0, "maximum": MAX_POLL_SECONDS}},
]
