"""A call's tokens: one per purpose, each living only as long as its purpose needs.

Every call token names the call (`call`, its correlation id), its voice session (`sid`) and customer (`cid`), and
is good for one audience only:

- `media`, in the gateway URL ACS is answered with: opens the call's media socket, once; lives
  CALL_MEDIA_TOKEN_TTL_SECONDS.
- `call-control`, in the gateway's memory and never in a URL: `/api/calls/{call}/*` and `POST /api/handoffs` for
  the call's session; lives CALL_TOKEN_TTL_SECONDS (the longest call).
- `acs-callback`, in the callback URL ACS is answered with: ACS's callbacks for the call; lives
  CALL_TOKEN_TTL_SECONDS.

The media token is needed only while ACS connects, which it does as the call connects, so it lives minutes, and
the gateway takes a call's socket once (`media_gateway/server.py`). The call-control token is what the gateway
needs for the rest of the call; the gateway mints it itself when it accepts the socket, from the media token's
verified claims. It holds the signing secret anyway (it verifies with it), so minting gives it no power it lacked,
and the token that lives all call long then never travels in a URL that ACS, a proxy or a log could keep: what
a leaked media URL gives is a used, soon-expired token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.tokens import TokenSigner

if TYPE_CHECKING:
    from shared.settings import Settings

MEDIA_AUDIENCE = "media"
CONTROL_AUDIENCE = "call-control"
CALLBACK_AUDIENCE = "acs-callback"


def lifetime(settings: Settings, audience: str) -> int:
    """How long a call token for `audience` lives, in seconds."""
    if audience == MEDIA_AUDIENCE:
        return settings.call_media_token_ttl_seconds
    return settings.call_token_ttl_seconds


def issue(signer: TokenSigner, settings: Settings, audience: str, *, call: str, sid: str, cid: str,
          **extra: Any) -> str:
    """A token for one call and one purpose, with that purpose's lifetime."""
    return signer.issue(audience, lifetime(settings, audience), call=call, sid=sid, cid=cid, **extra)

