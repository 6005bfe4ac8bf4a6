"""CallControl over ACS Call Automation (azure-communication-callautomation, async client).

The SDK is imported on the first call, not at module load: a cold start that never answers a call never pays for
it. In Azure the client authenticates with the managed identity (Entra ID); locally with the emulator's access key
(HMAC-signed requests). `from_connection_string` would force https, so the endpoint and key are passed apart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.calls.control import (
    AnsweredCall, CallControl, CallEnded, CallRejected, MediaStreaming, TransferTarget, custom_headers,
)
from shared.errors import Unavailable

if TYPE_CHECKING:
    from azure.communication.callautomation.aio import CallAutomationClient

    from shared.settings import Settings

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = {408, 429}


class AcsCallControl(CallControl):
    def __init__(self, endpoint: str, *, access_key: str = "", azure_client_id: str = "") -> None:
        if not endpoint:
            raise ValueError("an ACS endpoint is required")
        self._endpoint = endpoint.rstrip("/")
        self._access_key = access_key
        self._azure_client_id = azure_client_id
        self._client: CallAutomationClient | None = None
        self._credential: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AcsCallControl:
        return cls(settings.acs_endpoint, access_key=settings.acs_access_key, azure_client_id=settings.azure_client_id)

    async def answer(
        self, incoming_call_context: str, callback_url: str, media: MediaStreaming, *, operation_context: str = ""
    ) -> AnsweredCall:
        async with _translated("answer"):
            props = await self._sdk().answer_call(
                incoming_call_context,
                callback_url,
                media_streaming=_streaming(media),
                operation_context=operation_context or None,
            )
        return AnsweredCall(props.call_connection_id, props.correlation_id, props.call_connection_state)

    async def create_call(
        self, target: str, source_caller_id: str, callback_url: str, media: MediaStreaming, *,
        operation_context: str = "",
    ) -> AnsweredCall:
        from azure.communication.callautomation import PhoneNumberIdentifier

        # A phone callee sees `source_caller_id` (a number of our resource, or ACS refuses the call).
        async with _translated("place a call"):
            props = await self._sdk().create_call(
                PhoneNumberIdentifier(target),
                callback_url,
                source_caller_id_number=PhoneNumberIdentifier(source_caller_id),
                media_streaming=_streaming(media),
                operation_context=operation_context or None,
            )
        return AnsweredCall(props.call_connection_id, props.correlation_id, props.call_connection_state)

    async def hang_up(self, call_connection_id: str) -> None:
        async with _translated("hang up"):
            await self._sdk().get_call_connection(call_connection_id).hang_up(is_for_everyone=True)

    async def transfer(
        self, call_connection_id: str, target: TransferTarget, *, operation_context: str = "",
        context: Mapping[str, str] | None = None,
    ) -> None:
        from azure.communication.callautomation import CommunicationUserIdentifier, PhoneNumberIdentifier

        # A phone number is reached over SIP and takes SIP headers; an ACS user is reached over VoIP and takes VoIP
        # headers. The SDK sends both kinds as the request's customCallingContext.
        headers = custom_headers(target, context or {})
        if target.is_phone:
            identifier: Any = PhoneNumberIdentifier(target.value)
            custom = {"sip_headers": headers} if headers else {}
        else:
            identifier = CommunicationUserIdentifier(target.value)
            custom = {"voip_headers": headers} if headers else {}
        async with _translated("transfer"):
            await self._sdk().get_call_connection(call_connection_id).transfer_call_to_participant(
                identifier, operation_context=operation_context or None, **custom
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._credential is not None and hasattr(self._credential, "close"):
            await self._credential.close()
            self._credential = None

    def _sdk(self) -> CallAutomationClient:
        if self._client is None:
            from azure.communication.callautomation.aio import CallAutomationClient

            if self._access_key:
                from azure.core.credentials import AzureKeyCredential

                self._credential = AzureKeyCredential(self._access_key)
            else:
                from azure.identity.aio import DefaultAzureCredential

                self._credential = DefaultAzureCredential(managed_identity_client_id=self._azure_client_id or None)
            self._client = CallAutomationClient(self._endpoint, self._credential)
        return self._client


def _streaming(media: MediaStreaming) -> Any:
    """Bidirectional mixed audio over a WebSocket to the gateway, from the moment the call connects."""
    from azure.communication.callautomation import (
        AudioFormat,
        MediaStreamingAudioChannelType,
        MediaStreamingContentType,
        MediaStreamingOptions,
        StreamingTransportType,
    )

    return MediaStreamingOptions(
        transport_url=media.transport_url,
        transport_type=StreamingTransportType.WEBSOCKET,
        content_type=MediaStreamingContentType.AUDIO,
        audio_channel_type=MediaStreamingAudioChannelType.MIXED,
        start_media_streaming=True,
        enable_bidirectional=True,
        audio_format=AudioFormat(media.audio_format),
        enable_dtmf_tones=media.keypad,
    )


class _translated:
    """Turn the SDK's errors into domain errors that say whether a retry may help."""

    def __init__(self, action: str) -> None:
        self.action = action

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type, exc, tb) -> bool:  # type: ignore[no-untyped-def]
        if exc is None:
            return False
        from azure.core.exceptions import AzureError, HttpResponseError

        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            message = f"ACS refused to {self.action} ({exc.status_code}): {_service_message(exc)}"
            if exc.status_code == 404:
                raise CallEnded(message) from exc
            if exc.status_code in _RETRYABLE_STATUS or exc.status_code >= 500:
                raise Unavailable(message) from exc
            raise CallRejected(message) from exc
        if isinstance(exc, AzureError):  # connection refused, timeout, DNS: the service was not reached
            raise Unavailable(f"could not reach ACS to {self.action}: {exc}") from exc
        return False


def _service_message(exc: Any) -> str:
    error = getattr(exc, "error", None)
    return str(getattr(error, "message", None) or exc.reason or exc.message).splitlines()[0]
