"""What every HTTP trigger shares: JSON responses, errors as `{"error": ...}`, domain errors mapped to status codes."""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import azure.functions as func

from shared import redact, telemetry
from shared.errors import Conflict, InvalidInput, NotFound, SessionClosed, Unauthorized, Unavailable

if TYPE_CHECKING:
    from shared.stores.base import SessionState

log = logging.getLogger(__name__)

#: Largest request body any of our JSON endpoints accepts.
MAX_BODY_BYTES = 64 * 1024
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")


class Forbidden(Exception):
    """A valid credential for something else (another session's token)."""


class TooManyRequests(Exception):
    """This client has done this too often lately; it may try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """`body` as JSON: a plain value, or one of the API's models (functions/api/) with the fields it was given."""
    if hasattr(body, "model_dump_json"):  # a field the route did not set is left out, as the model's schema allows
        payload = body.model_dump_json(by_alias=True, exclude_unset=True)
    else:
        payload = json.dumps(body)
    return func.HttpResponse(
        payload, status_code=status, mimetype="application/json", charset="utf-8",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def error(status: int, message: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return json_response({"error": message}, status, headers)


def json_body(req: func.HttpRequest, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request's JSON object, or InvalidInput saying what is wrong with it (functions/api/parsing.py then reads
    it into a model)."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidInput(f"request body is over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidInput("request body must be a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("request body is not valid JSON") from None
    except RecursionError:  # e.g. 30,000 nested arrays: well under the size limit, past Python's stack
        raise InvalidInput("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


def idempotency_key(req: func.HttpRequest) -> str | None:
    """The client's `Idempotency-Key` (visible ASCII, at most 128 characters), if it sent one."""
    key = req.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidInput("Idempotency-Key must be 1 to 128 visible ASCII characters")
    return key


def bearer_token(req: func.HttpRequest) -> str:
    header = req.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send Authorization: Bearer <token>")
    return token.strip()


def client_address(req: func.HttpRequest) -> str:
    """The address the request came from, as the platform's front end saw it: "unknown" if nothing says.

    The Functions front end appends the peer it accepted the connection from to `X-Forwarded-For` (as `ip:port`), and
    so does the local host (local/host.py). So the last hop is the one a client cannot choose; the first is whatever
    the client sent, and a loop that wrote a new one each time would dodge any limit keyed on it. An IPv6 client
    holds a whole /64, so its /64 is its address.
    """
    hops = [hop.strip() for hop in req.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    if not hops:
        return "unknown"
    hop = hops[-1]
    for candidate in (hop, hop.rpartition(":")[0], hop.partition("]")[0].lstrip("[")):  # bare, ip:port, [v6]:port
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if address.version == 6 and address.ipv4_mapped is None:
            return f"{ipaddress.ip_network((address, 64), strict=False).network_address}-64"
        return str(getattr(address, "ipv4_mapped", None) or address)
    return "unknown"


async def rate_limit(state: SessionState, key: str, limit: int, window_seconds: int, what: str) -> None:
    """Count one hit on `key` (an action and a client); TooManyRequests past `limit` in the window (0: no limit)."""
    if limit and await state.hit(f"rate:{key}", window_seconds) > limit:
        # The window opened at the key's first hit, which we do not know: its full length is a safe wait.
        raise TooManyRequests(f"too many {what} from your address: try again in {window_seconds} s", window_seconds)


Handler = Callable[..., Awaitable[func.HttpResponse]]  # (req, **other bindings such as a durable client)


def handles_errors(handler: Handler) -> Handler:
    """Turn domain errors into clear 4xx/503 answers; anything else is a logged 500 with no detail to the caller."""

    @functools.wraps(handler)
    async def wrapper(req: func.HttpRequest, **bindings: Any) -> func.HttpResponse:
        try:
            return await handler(req, **bindings)
        except InvalidInput as exc:
            return error(400, str(exc))
        except Unauthorized as exc:
            return error(401, str(exc), {"WWW-Authenticate": "Bearer"})
        except Forbidden as exc:
            return error(403, str(exc))
        except TooManyRequests as exc:
            return error(429, str(exc), {"Retry-After": str(exc.retry_after)})
        except NotFound as exc:
            return error(404, str(exc))
        except (Conflict, SessionClosed) as exc:
            return error(409, str(exc))
        except Unavailable as exc:
            retry = str(int(exc.retry_after or 5))
            log.warning("%s %s: a backing service is unavailable: %s", req.method, redact.url(req.url), exc)
            return error(503, "a backing service is unavailable; try again shortly", {"Retry-After": retry})
        except Exception:
            log.exception("%s %s failed", req.method, redact.url(req.url))
            return error(500, "internal error")

    @functools.wraps(handler)
    async def traced(req: func.HttpRequest, **bindings: Any) -> func.HttpResponse:
        # The request's span continues the caller's trace when it sends a traceparent (the media gateway does).
        name = handler.__name__
        with telemetry.span(name, parent=req.headers, kind=telemetry.SpanKind.SERVER, http_method=req.method) as span:
            response = await wrapper(req, **bindings)
            span.set_attribute("http.status_code", response.status_code)
            if response.status_code >= 500:
                telemetry.error("http_5xx", name, response.status_code)
            return response

    return traced
