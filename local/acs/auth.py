"""Verify the HMAC-SHA256 signature the ACS SDKs put on every request made with an access key.

string-to-sign = VERB \n path?query \n x-ms-date;host;x-ms-content-sha256, keyed with base64-decoded access key
(reference: the SDK's `_shared/policy.py`). The emulator checks it the way the service does: a wrong signature,
a body that does not match its hash, or a date more than 15 minutes off are 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from aiohttp import web

MAX_CLOCK_SKEW_SECONDS = 15 * 60


def content_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def signature(access_key: str, method: str, path_and_query: str, date: str, host: str, body_hash: str) -> str:
    to_sign = f"{method.upper()}\n{path_and_query}\n{date};{host};{body_hash}"
    digest = hmac.new(base64.b64decode(access_key), to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(request: web.Request, body: bytes, access_key: str) -> str | None:
    """None if the request is signed correctly, else the reason it is not."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("HMAC-SHA256 "):
        return "missing HMAC-SHA256 Authorization header"
    fields = dict(part.split("=", 1) for part in header[len("HMAC-SHA256 ") :].split("&") if "=" in part)
    date = request.headers.get("x-ms-date", "")
    claimed_hash = request.headers.get("x-ms-content-sha256", "")
    if not date or not claimed_hash or "Signature" not in fields:
        return "x-ms-date, x-ms-content-sha256 and Signature are required"
    if not hmac.compare_digest(claimed_hash, content_hash(body)):
        return "x-ms-content-sha256 does not match the body"
    try:
        sent = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return "x-ms-date is not an RFC 1123 date"
    if abs((datetime.now(timezone.utc) - sent).total_seconds()) > MAX_CLOCK_SKEW_SECONDS:
        return "x-ms-date is too far from the current time"
    expected = signature(access_key, request.method, request.path_qs, date, request.host, claimed_hash)
    if not hmac.compare_digest(fields["Signature"], expected):
        return "the request signature does not match"
    return None
