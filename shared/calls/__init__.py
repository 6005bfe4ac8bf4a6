"""Voice calls: the CallControl port and its ACS adapter, the call events we receive, and the call service.

`build_call_control` picks the adapter from settings without importing the ACS SDK (that happens on first use).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from shared.calls.control import AnsweredCall, CallControl, CallRejected, MediaStreaming, TransferTarget

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["CallControl", "build_call_control"]


class NoCallControl(CallControl):
    """Where no ACS endpoint is configured: every request says so."""

    async def answer(
        self, incoming_call_context: str, callback_url: str, media: MediaStreaming, *, operation_context: str = ""
    ) -> AnsweredCall:
        raise CallRejected("no ACS endpoint is configured (ACS_ENDPOINT): cannot answer calls")

    async def hang_up(self, call_connection_id: str) -> None:
        raise CallRejected("no ACS endpoint is configured (ACS_ENDPOINT): cannot hang up")

    async def transfer(
        self, call_connection_id: str, target: TransferTarget, *, operation_context: str = "",
        context: Mapping[str, str] | None = None,
    ) -> None:
        raise CallRejected("no ACS endpoint is configured (ACS_ENDPOINT): cannot transfer")


def build_call_control(settings: Settings) -> CallControl:
    """ACS Call Automation at ACS_ENDPOINT (Azure, or the local emulator); does no I/O."""
    if not settings.acs_endpoint:
        return NoCallControl()
    from shared.calls.acs import AcsCallControl

    return AcsCallControl.from_settings(settings)
