"""What log lines may say about customers and credentials: masked phone numbers, URLs without their tokens.

Call sites mask what they log (`phone()`, `url()`); customer message text is logged at DEBUG only. `install()` adds
a safety net for the call sites we missed: every log record is rewritten, as it is made, with phone numbers masked
and anything that looks like a bearer token, a signed token of ours, a JWT or a `token=` / `code=` query value
replaced by `***`. It is installed by the function app (so the Functions worker and the local host get it) and by
the media gateway.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

MASK = "***"

#: E.164 numbers (+ and 8 to 15 digits), as ACS and WhatsApp carry them.
_PHONE = re.compile(r"(?<![\w+])\+\d{8,15}\b")
#: Query parameters whose value is a credential: our per-call and handoff-link tokens, function keys, SAS signatures.
_QUERY_SECRET = re.compile(r"(?i)([?&](?:token|code|handoff|sig|key|access_token)=)[^&\s\"'#]+")
_BEARER = re.compile(r"(?i)\b(bearer|HMAC-SHA256)\s+[^\s\"',]+")
#: JWTs (ACS callbacks) and our own `base64url(claims).base64url(HMAC)` tokens (shared/tokens.py).
_JWT = re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*")
_SIGNED = re.compile(r"\b[\w-]{20,}\.[\w-]{43}\b")
_KEY_VALUE = re.compile(r"(?i)\b(AccountKey|SharedAccessKey|accesskey|password)=[^;\s\"']+")


def phone(number: str | None) -> str:
    """`+15555550100` -> `+1555***0100`: enough to tell two callers apart in a log, not enough to call them."""
    if not number:
        return "a withheld number"
    if len(number) <= 8:
        return MASK + number[-2:]
    return number[:5] + MASK + number[-4:]


def url(value: str) -> str:
    """A URL with the values of its credential query parameters (`token`, `code`, `handoff`, ...) masked."""
    return _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, value)


def text(value: str) -> str:
    """Any text with phone numbers, tokens, keys and credential query values masked (what `install()` applies)."""
    value = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, value)
    value = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", value)
    value = _KEY_VALUE.sub(lambda m: f"{m.group(1)}={MASK}", value)
    value = _JWT.sub(MASK, value)
    value = _SIGNED.sub(MASK, value)
    return _PHONE.sub(lambda m: phone(m.group(0)), value)


_installed = False


def install() -> None:
    """Redact every log record of this process as it is made (idempotent). A record factory rather than a handler
    filter, so it covers handlers added later too (the Functions worker's, pytest's, an OpenTelemetry exporter's)."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def redacting_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report, as logging does
            return record
        cleaned = text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[0] is not None:  # an exception's message can carry a URL or a number
            # Formatters use exc_text when it is set; this is what Formatter.formatException would write.
            record.exc_text = text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    logging.setLogRecordFactory(redacting_record)
