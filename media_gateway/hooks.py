"""How the gateway hands a call back to the rest of the system: ending it, and starting a channel switch.

The gateway carries the call's audio but does not control the call: ACS Call Automation does, from the function
app (functions/calls.py), which has the call connection id and the ACS credentials. So the gateway asks it over
HTTP, with the call's own control token as the credential: `POST {SWITCHBOARD_PUBLIC_URL}/api/calls/{call}/hangup`
with `Authorization: Bearer <control token>` (minted when the call's media socket was accepted: the media token in
the socket URL is for that socket only). A channel switch starts the Durable handoff the same way:
`POST {SWITCHBOARD_PUBLIC_URL}/api/handoffs` with `{customer_id, session_id, to_channel}` (functions/handoff.py),
and a caller the desk routed to a person is put through with `POST .../api/calls/{call}/transfer`
`{"escalation_id"}`: the function app rings that person with the escalation id in the call's custom context.

When the gateway ends a call:
- the conversation accepted a switch to another channel (`TurnOutcome.switch_to`): `start_handoff(call, channel)`
  runs as soon as the turn is saved, the reply ("I'm sending you a WhatsApp message now...") plays out, then the
  call ends;
- the turn left the voice session closed (completed, transferred) or the session was closed elsewhere;
- the caller said nothing through the reprompt and the goodbye (silence.py): the reason is `ABANDONED`, and the
  hang-up asks the function app to record the call as abandoned (`{"outcome": "abandoned"}`);
- in every case `end_call(call, reason)` runs after the last reply has been played, then the media socket closes.

When the turn escalated the caller to a person who is free (`TurnOutcome.escalation` CONNECTING), `transfer(call,
escalation_id)` runs once the reply ("I'm putting you through to Dana now") has played. The gateway does not end the
call: ACS ends our leg when the person answers, and closes the media socket with it.

`CallHooks` is built once per process by `build_hooks(settings)`; tests and benchmarks pass their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import aiohttp

from shared import telemetry
from shared.errors import SwitchboardError, Unavailable

log = logging.getLogger(__name__)

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class CallRef:
    """The call a media connection carries, from its verified token."""

    call_id: str  # the call's correlation id (the `call` claim)
    session_id: str  # the voice session (`sid`)
    customer_id: str  # `cid`
    token: str = field(repr=False)  # the call-control token: the gateway's credential for the call's routes and handoff
    traceparent: str | None = None  # the IncomingCall's trace context (`tp`): the call's turns continue its trace
    outbound: bool = False  # we placed the call (`out`): screen for an answering machine first (voicemail.py)

    @classmethod
    def from_claims(cls, claims: dict[str, Any], token: str) -> CallRef:
        """The call a verified media token's `claims` name, carried with its call-control `token`."""
        session_id, customer_id = claims.get("sid"), claims.get("cid")
        if not isinstance(session_id, str) or not isinstance(customer_id, str) or not session_id or not customer_id:
            raise ValueError("the media token names no session or customer")
        call_id, traceparent = claims.get("call"), claims.get("tp")
        return cls(str(call_id) if call_id else session_id, session_id, customer_id, token,
                   traceparent if isinstance(traceparent, str) else None, outbound=bool(claims.get("out")))


#: Why a call ends when the caller went silent: the function app records such a call as abandoned.
ABANDONED = "abandoned: the caller said nothing"
#: Why a call we placed ends after the message left on an answering machine: recorded as voicemail.
VOICEMAIL = "voicemail: an answering machine took the call"

EndCall = Callable[[CallRef, str], Awaitable[None]]
StartHandoff = Callable[[CallRef, str], Awaitable[None]]
Transfer = Callable[[CallRef, str], Awaitable[None]]  # (call, escalation id)


async def _log_end(call: CallRef, reason: str) -> None:
    log.info("call %s ends (%s); no call control is wired, so only the media stream closes", call.call_id, reason)


async def _no_handoff(call: CallRef, channel: str) -> None:
    log.warning("call %s: the caller accepted to move to %s, but no handoff starter is wired", call.call_id, channel)


async def _no_transfer(call: CallRef, escalation_id: str) -> None:
    raise SwitchboardError(f"call {call.call_id}: no call control is wired to put the caller through to a person")


@dataclass(frozen=True)
class CallHooks:
    end_call: EndCall = _log_end
    """Hang the call up; called once, after the last reply has been played."""
    start_handoff: StartHandoff = _no_handoff
    """Start moving the customer to `channel` (the handoff orchestration); raise to keep the caller on the line."""
    transfer: Transfer = _no_transfer
    """Put the caller through to the person escalation `escalation_id` was routed to; raise if that cannot start."""


class FunctionsCallControl:
    """The function app's routes for calls and handoffs (functions/calls.py, functions/handoff.py)."""

    def __init__(self, base_url: str) -> None:
        self._base = base_url.rstrip("/")

    async def start_handoff(self, call: CallRef, channel: str) -> None:
        body = {"customer_id": call.customer_id, "session_id": call.session_id, "to_channel": channel}
        try:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
                async with http.post(
                    f"{self._base}/api/handoffs", json=body,
                    # the traceparent makes the handoff part of the call's trace
                    headers=telemetry.inject({"Authorization": f"Bearer {call.token}"}),
                ) as response:
                    if response.status >= 400:
                        text = (await response.text())[:200]
                        raise SwitchboardError(f"handoff of call {call.call_id} refused: {response.status} {text}")
                    started = await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"handoff of call {call.call_id} failed: {exc}") from exc
        log.info("call %s: handoff to %s started (%s)", call.call_id, channel, started.get("id"))

    async def transfer(self, call: CallRef, escalation_id: str) -> None:
        url = f"{self._base}/api/calls/{quote(call.call_id, safe='')}/transfer"
        try:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
                async with http.post(url, json={"escalation_id": escalation_id},
                                     headers=telemetry.inject({"Authorization": f"Bearer {call.token}"})) as response:
                    if response.status >= 400:
                        body = (await response.text())[:200]
                        raise SwitchboardError(f"transfer of call {call.call_id} refused: {response.status} {body}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"transfer of call {call.call_id} failed: {exc}") from exc
        log.info("call %s: put through for escalation %s", call.call_id, escalation_id)

    async def hang_up(self, call: CallRef, reason: str) -> None:
        url = f"{self._base}/api/calls/{quote(call.call_id, safe='')}/hangup"
        # What the call record keeps of how it ended.
        body = {"outcome": "abandoned"} if reason == ABANDONED else {"outcome": "voicemail"} if reason == VOICEMAIL else None
        try:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
                async with http.post(url, json=body, headers={"Authorization": f"Bearer {call.token}"}) as response:
                    if response.status == 409:  # the call has already ended or was transferred: nothing to do
                        log.info("call %s: %s", call.call_id, (await response.text())[:200])
                        return
                    if response.status >= 400:
                        body = (await response.text())[:200]
                        raise SwitchboardError(f"hang-up of call {call.call_id} refused: {response.status} {body}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"hang-up of call {call.call_id} failed: {exc}") from exc
        log.info("call %s: hung up (%s)", call.call_id, reason)


def build_hooks(public_url: str) -> CallHooks:
    """The hooks `python -m media_gateway` uses: the function app at SWITCHBOARD_PUBLIC_URL."""
    functions = FunctionsCallControl(public_url)
    return CallHooks(end_call=functions.hang_up, start_handoff=functions.start_handoff, transfer=functions.transfer)
