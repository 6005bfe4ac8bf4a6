"""The CallControl port: what the app asks of the telephony service (answer, place, hang up, transfer).

ACS Call Automation is the adapter (`shared/calls/acs.py`), pointed at Azure or at the local ACS emulator. Errors
come back as domain errors: `Unavailable` when a retry may help, `CallEnded` when the call is gone, `CallRejected`
when the service refused the request for good.

A transfer rings a person (`TransferTarget`: a phone number or an ACS user) and carries custom context: a few
name/value pairs the person's phone or app receives with the call, which is how the desk knows whose context to
open. On a phone number they travel as SIP headers, on an ACS user as VoIP headers; `custom_headers` spells them
each way (docs/desk.md, "How calls reach people", has the rules ACS sets).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import SwitchboardError

#: The audio formats ACS streams (docs/protocols.md, "Media streaming"): 20 ms frames of 16-bit mono PCM.
AUDIO_FORMATS = {16000: "pcm16KMono", 24000: "pcm24KMono"}

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_ACS_USER = re.compile(r"^8:acs:[A-Za-z0-9_:.-]{1,256}$")
#: Custom SIP header names must start with this (the older of the two prefixes ACS takes, and the one every SBC
#: we might meet passes on).
SIP_PREFIX = "X-MS-Custom-"
#: ACS's limits on custom context: SIP names of 64 characters with the prefix, values of 256 in a small alphabet,
#: at most 5 SIP headers; VoIP names of 64 and values of 1024.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_SIP_VALUE = re.compile(r"^[A-Za-z0-9=;.!%*_+~-]{0,256}$")
MAX_SIP_HEADERS = 5
MAX_NAME_CHARS, MAX_VOIP_VALUE_CHARS = 64, 1024

#: The custom header that names the escalation a transferred call belongs to.
ESCALATION_HEADER = "Switchboard-Escalation"


class CallEnded(SwitchboardError):
    """The call no longer exists (hung up, transferred away, or never answered)."""


class CallRejected(SwitchboardError):
    """The service refused the request (a bad target, an expired incoming-call context); retrying will not help."""


@dataclass(frozen=True)
class MediaStreaming:
    """Bidirectional audio over a WebSocket to the media gateway, started as the call connects.

    With `keypad`, ACS also streams the keys the caller presses on the same WebSocket, one `DtmfData` message per
    key (docs/security.md, "Verifying customers": a caller may key their code rather than say it)."""

    transport_url: str  # wss://gateway/media?token=...
    sample_rate: int = 16000
    keypad: bool = True

    def __post_init__(self) -> None:
        if self.sample_rate not in AUDIO_FORMATS:
            raise ValueError(f"sample_rate must be one of {sorted(AUDIO_FORMATS)}, not {self.sample_rate}")

    @property
    def audio_format(self) -> str:
        return AUDIO_FORMATS[self.sample_rate]


@dataclass(frozen=True)
class TransferTarget:
    """Who a transfer rings: a phone number in E.164 ("+15555550142") or an ACS user ("8:acs:<resource>_<id>")."""

    value: str

    def __post_init__(self) -> None:
        if not (_E164.match(self.value) or _ACS_USER.match(self.value)):
            raise ValueError(f"a transfer target is an E.164 number or an ACS user id (8:acs:...), not {self.value!r}")

    @property
    def is_phone(self) -> bool:
        return self.value.startswith("+")

    @staticmethod
    def valid(value: str) -> bool:
        return bool(_E164.match(value) or _ACS_USER.match(value))


def custom_headers(target: TransferTarget, context: Mapping[str, str]) -> dict[str, str]:
    """`context` (name -> value) as the headers a transfer to `target` carries: `X-MS-Custom-<Name>` SIP headers for
    a phone number, lower-case `<name>` VoIP headers for an ACS user. ValueError if ACS would refuse them."""
    headers: dict[str, str] = {}
    for name, value in context.items():
        if not _NAME.match(name):
            raise ValueError(f"custom header name {name!r}: letters, digits and dashes only")
        header = SIP_PREFIX + name if target.is_phone else name.lower()
        if len(header) > MAX_NAME_CHARS:
            raise ValueError(f"custom header {header!r} is longer than {MAX_NAME_CHARS} characters")
        if target.is_phone and not _SIP_VALUE.match(value):
            raise ValueError(f"SIP header {header}: at most 256 letters, digits and =;.!%*_+~- characters")
        if not target.is_phone and len(value) > MAX_VOIP_VALUE_CHARS:
            raise ValueError(f"VoIP header {header} is longer than {MAX_VOIP_VALUE_CHARS} characters")
        headers[header] = value
    if target.is_phone and len(headers) > MAX_SIP_HEADERS:
        raise ValueError(f"a transfer to a phone number carries at most {MAX_SIP_HEADERS} custom SIP headers")
    return headers


def context_value(headers: Mapping[str, str], name: str) -> str | None:
    """The value of custom context `name` in headers received either way (SIP or VoIP), names read in any case."""
    wanted = {(SIP_PREFIX + name).lower(), name.lower()}
    return next((value for header, value in headers.items() if header.lower() in wanted), None)


@dataclass(frozen=True)
class AnsweredCall:
    call_connection_id: str
    correlation_id: str | None
    state: str | None  # callConnectionState right after answering, usually "connecting"


class CallControl(ABC):
    @abstractmethod
    async def answer(
        self, incoming_call_context: str, callback_url: str, media: MediaStreaming, *, operation_context: str = ""
    ) -> AnsweredCall:
        """Answer a ringing call; ACS then posts callbacks to `callback_url` and opens the media WebSocket."""

    async def create_call(
        self, target: str, source_caller_id: str, callback_url: str, media: MediaStreaming, *,
        operation_context: str = "",
    ) -> AnsweredCall:
        """Place a call from our number `source_caller_id` to the phone `target` (both E.164), with media streaming
        to the gateway as `answer` has. Returns as the call starts ringing (state "connecting"); the outcome comes
        as CallConnected, or CreateCallFailed / CallDisconnected with the reason (busy, no answer)."""
        raise CallRejected("this call control cannot place calls")

    @abstractmethod
    async def hang_up(self, call_connection_id: str) -> None:
        """End the call for everyone on it."""

    @abstractmethod
    async def transfer(
        self, call_connection_id: str, target: TransferTarget, *, operation_context: str = "",
        context: Mapping[str, str] | None = None,
    ) -> None:
        """Hand the caller to a person at `target`, with custom `context` (name -> value, see `custom_headers`).

        Returns once the service took the request; the outcome comes as CallTransferAccepted (our leg then ends)
        or CallTransferFailed (the caller stays with us), each echoing `operation_context`."""

    async def close(self) -> None:
        """Release connections. The default holds none."""
