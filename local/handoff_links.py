"""The web chat link a handoff sent a customer, read the way the customer gets it: from the message on their phone.

The orchestration's status does not carry the link (its token would be readable by anyone with a function key or
the storage account), so whatever acts as the customer (a test, an eval journey) takes it from the ACS emulator's
outbox: the link template's values hold the URL, and the token in it names the handoff (`hid`), so concurrent
handoffs are told apart.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit


def sent_link(outbox: list[dict[str, Any]], instance_id: str) -> str | None:
    """The newest link in `outbox` (the emulator's `GET /_emulator/messages`) for handoff `instance_id`, if any."""
    for message in reversed(outbox):
        for value in (message.get("templateValues") or {}).values():
            if isinstance(value, str) and "handoff=" in value:
                token = parse_qs(urlsplit(value).query).get("handoff", [""])[0]
                if _unverified_claims(token).get("hid") == instance_id:
                    return value
    return None


def _unverified_claims(token: str) -> dict[str, Any]:
    """The token's claims, unchecked: only to pick the right link (the app verifies it when the link is used)."""
    parts = token.split(".")
    payload = parts[1] if len(parts) == 3 else parts[0]  # a JWT's claims are its middle part (shared/tokens.py)
    try:
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return {}
