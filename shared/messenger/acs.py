"""Messenger on Azure Communication Services Advanced Messaging (`azure-communication-messages`).

The only module that imports the SDK, and only on the first send. It uses the SDK's *synchronous* client on a worker
thread: in 1.1.0 the async client wires a synchronous bearer-token policy into its async pipeline, so with an Entra
ID credential every send fails ('coroutine' object has no attribute ...). The sync client works with both an access
key (local emulator) and DefaultAzureCredential (managed identity in Azure), so there is one code path for both.

The SDK's own retry policy is switched off (`retry_total=0`): retries happen once, in `Messenger.send`, with a
budget we chose and the repeatability id kept across attempts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from shared.errors import Unavailable
from shared.messenger.base import Messenger, OutboundMessage, SendFailed, TemplateMessage, TextMessage

log = logging.getLogger(__name__)

#: Seconds to connect and to wait for the answer of one send attempt.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 15
#: HTTP statuses worth another try: timeouts, throttling, and the server's own failures.
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


class AcsMessenger(Messenger):
    def __init__(self, endpoint: str, channel_id: str, *, access_key: str = "", client_id: str = "") -> None:
        self.endpoint = endpoint.rstrip("/")
        self.channel_id = channel_id
        self._access_key = access_key
        self._client_id = client_id
        self._client: Any = None
        self._lock = threading.Lock()

    async def _send(self, message: OutboundMessage, repeatability_id: str, first_sent: datetime) -> str:
        return await asyncio.to_thread(self._send_blocking, message, repeatability_id, first_sent)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)

    # On the worker thread ---------------------------------------------------------------------------------------

    def _send_blocking(self, message: OutboundMessage, repeatability_id: str, first_sent: datetime) -> str:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
        from azure.core.exceptions import ServiceResponseError

        client = self._connect()
        headers = {
            "Repeatability-Request-ID": repeatability_id,
            "Repeatability-First-Sent": format_datetime(first_sent.astimezone(timezone.utc), usegmt=True),
        }
        try:
            result = client.send(
                self._content(message), headers=headers, connection_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT
            )
        except ClientAuthenticationError as exc:
            raise SendFailed(f"ACS refused our credentials: {_reason(exc)}", code="401") from None
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status in RETRYABLE_STATUS:
                raise Unavailable(f"ACS answered {status}: {_reason(exc)}", retry_after=_retry_after(exc)) from None
            raise SendFailed(f"ACS rejected the message ({status}): {_reason(exc)}", code=_code(exc, status)) from None
        except (ServiceRequestError, ServiceResponseError) as exc:  # no connection, or no answer in time
            raise Unavailable(f"ACS is unreachable at {self.endpoint}: {exc}") from None
        receipts = result.receipts or []
        if not receipts:
            raise SendFailed("ACS accepted the message but returned no receipt", code="NoReceipt")
        return receipts[0].message_id

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                from azure.communication.messages import NotificationMessagesClient

                # azure-core logs every request and response at INFO; one line per WhatsApp reply is noise here.
                logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
                # from_connection_string would force https://, which the local emulator does not speak.
                self._client = NotificationMessagesClient(self.endpoint, self._credential(), retry_total=0)
            return self._client

    def _credential(self) -> Any:
        if self._access_key:
            from azure.core.credentials import AzureKeyCredential

            return AzureKeyCredential(self._access_key)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(managed_identity_client_id=self._client_id or None)

    def _content(self, message: OutboundMessage) -> Any:
        from azure.communication.messages.models import TextNotificationContent

        if isinstance(message, TextMessage):
            return TextNotificationContent(
                channel_registration_id=self.channel_id, to=[message.to], content=message.text
            )
        assert isinstance(message, TemplateMessage)
        from azure.communication.messages.models import (
            MessageTemplate,
            MessageTemplateText,
            TemplateNotificationContent,
            WhatsAppMessageTemplateBindings,
            WhatsAppMessageTemplateBindingsComponent,
        )

        template = MessageTemplate(
            name=message.name,
            language=message.language,
            template_values=[MessageTemplateText(name=name, text=text) for name, text in message.values],
            bindings=WhatsAppMessageTemplateBindings(
                body=[WhatsAppMessageTemplateBindingsComponent(ref_value=name) for name, _ in message.values]
            ),
        )
        return TemplateNotificationContent(channel_registration_id=self.channel_id, to=[message.to], template=template)


def _reason(exc: Any) -> str:
    error = getattr(exc, "error", None)
    if error is not None and getattr(error, "message", None):
        return str(error.message)
    return str(getattr(exc, "reason", None) or exc.message or exc)


def _code(exc: Any, status: int) -> str:
    error = getattr(exc, "error", None)
    return str(getattr(error, "code", None) or status)


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return min(float(raw), 30.0) if raw else None
    except ValueError:  # an HTTP date: let the backoff decide
        return None
