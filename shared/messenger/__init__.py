"""The Messenger port (WhatsApp sends) and the factory that picks its adapter from the settings.

The ACS adapter imports azure-communication-messages on its first send, not here: a web chat cold start never pays
for it. What SMS and WhatsApp share on the way in lives here too: `events.py` (reading an event's fields) and
`inbound.py` (handling each event once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.messenger.base import Messenger, SendFailed, TemplateMessage, TextMessage, UnconfiguredMessenger

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["Messenger", "SendFailed", "TemplateMessage", "TextMessage", "build_messenger"]


def build_messenger(settings: Settings) -> Messenger:
    """ACS Advanced Messaging when ACS_ENDPOINT and WHATSAPP_CHANNEL_ID are set (`make run` points them at the
    emulator); otherwise a messenger whose sends fail permanently, naming the missing setting. Does no I/O."""
    missing = [key for key, value in (("ACS_ENDPOINT", settings.acs_endpoint),
                                      ("WHATSAPP_CHANNEL_ID", settings.whatsapp_channel_id)) if not value]
    if missing:
        return UnconfiguredMessenger(" and ".join(missing))
    from shared.messenger.acs import AcsMessenger

    return AcsMessenger(
        settings.acs_endpoint,
        settings.whatsapp_channel_id,
        access_key=settings.acs_access_key,
        client_id=settings.azure_client_id,
    )
