"""SMS on Azure Communication Services: the fourth channel, and the way codes, links and promised texts go out.

* `events.py` parses the two Event Grid events we subscribe to (SMSReceived, SMSDeliveryReportReceived);
* `sender.py` is the SmsSender port (retries, repeatability) with its stand-in when no sender number is set, and
  `acs.py` the adapter on `azure-communication-sms`, imported on the first send;
* `service.py` answers inbound texts through the conversation core, honours STOP / START / HELP, and sends every
  other text we owe (codes, web chat links, promised notifications) unless the customer opted out;
* `promises.py` keeps "we'll text you when it's restored": the index of who was promised what, and the send, once.

docs/sms.md says how it fits together and how to get a number that can send and receive texts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.sms.sender import SmsSender, UnconfiguredSmsSender

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["SmsSender", "build_sms_sender"]


def build_sms_sender(settings: Settings) -> SmsSender:
    """ACS SMS when ACS_ENDPOINT and ACS_SMS_FROM are set (`make run` points them at the emulator); otherwise a
    sender whose sends fail permanently, naming the missing setting. Does no I/O."""
    missing = [key for key, value in (("ACS_ENDPOINT", settings.acs_endpoint),
                                      ("ACS_SMS_FROM", settings.acs_sms_from)) if not value]
    if missing:
        return UnconfiguredSmsSender(" and ".join(missing))
    from shared.sms.acs import AcsSmsSender

    return AcsSmsSender(settings.acs_endpoint, settings.acs_sms_from, access_key=settings.acs_access_key,
                        client_id=settings.azure_client_id)
