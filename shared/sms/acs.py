"""SmsSender on Azure Communication Services SMS (`azure-communication-sms`): the only module that imports the SDK.

The SDK's `SmsClient.send` makes a fresh repeatability id for every call, so a retry of a send that reached ACS
(the answer was lost) would text the customer twice. We build the same request the SDK builds (its generated
`SendMessageRequest`, one recipient) with *our* repeatability id and first-sent time, and send it through the
client's own pipeline: same wire format, same authentication (HMAC with an access key, or Entra ID), same errors.

The async client is used directly: unlike azure-communication-messages 1.1.0 (see shared/messenger/acs.py), its
bearer-token policy is the async one. The SDK's own retries are off (`retry_total=0`); `SmsSender.send` retries.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from shared.errors import Unavailable
from shared.messenger.acs import CONNECT_TIMEOUT, READ_TIMEOUT, RETRYABLE_STATUS
from shared.messenger.base import SendFailed
from shared.sms.sender import SmsSender

log = logging.getLogger(__name__)


class AcsSmsSender(SmsSender):
    def __init__(self, endpoint: str, from_number: str, *, access_key: str = "", client_id: str = "") -> None:
        self.endpoint = endpoint.rstrip("/")
        self.from_number = from_number
        self._access_key = access_key
        self._client_id = client_id
        self._client: Any = None
        self._credential: Any = None

    async def _send(self, to: str, text: str, repeatability_id: str, first_sent: datetime, tag: str | None) -> str:
        from azure.communication.sms._generated.models import SendMessageRequest, SmsRecipient, SmsSendOptions
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
        from azure.core.exceptions import ServiceResponseError

        request = SendMessageRequest(
            from_property=self.from_number,
            sms_recipients=[SmsRecipient(
                to=to, repeatability_request_id=repeatability_id,
                repeatability_first_sent=format_datetime(first_sent.astimezone(timezone.utc), usegmt=True),
            )],
            message=text,
            sms_send_options=SmsSendOptions(enable_delivery_report=True, tag=tag),
        )
        try:
            response = await self._connect()._sms_service_client.sms.send(
                request, connection_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
        except ClientAuthenticationError as exc:
            raise SendFailed(f"ACS refused our credentials: {_reason(exc)}", code="401") from None
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status in RETRYABLE_STATUS:
                raise Unavailable(f"ACS SMS answered {status}: {_reason(exc)}", retry_after=_retry_after(exc)) from None
            raise SendFailed(f"ACS refused the text ({status}): {_reason(exc)}", code=str(status)) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise Unavailable(f"ACS SMS is unreachable at {self.endpoint}: {exc}") from None
        return _one_result(response.value or [], to)

    def _connect(self) -> Any:
        if self._client is None:
            from azure.communication.sms.aio import SmsClient

            # azure-core logs every request and response at INFO: one line per text is noise here.
            logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
            self._client = SmsClient(self.endpoint, self._make_credential(), retry_total=0)
        return self._client

    def _make_credential(self) -> Any:
        if self._access_key:
            from azure.core.credentials import AzureKeyCredential

            return AzureKeyCredential(self._access_key)
        from azure.identity.aio import DefaultAzureCredential

        self._credential = DefaultAzureCredential(managed_identity_client_id=self._client_id or None)
        return self._credential

    async def close(self) -> None:
        client, self._client = self._client, None
        credential, self._credential = self._credential, None
        if client is not None:
            await client.close()
        if credential is not None:
            await credential.close()


def _one_result(results: list[Any], to: str) -> str:
    """The message id of our one recipient's result; a refused recipient raises like a refused request would."""
    result = next((r for r in results if r.to == to), results[0] if results else None)
    if result is None:
        raise SendFailed("ACS accepted the text but returned no result for the recipient", code="NoResult")
    if result.successful and result.message_id:
        return str(result.message_id)
    status = int(result.http_status_code or 0)
    reason = result.error_message or f"status {status}"
    if status in RETRYABLE_STATUS:
        raise Unavailable(f"ACS SMS could not take the text for now ({status}): {reason}")
    raise SendFailed(f"ACS SMS refused the text to this number ({status}): {reason}", code=str(status))


def _reason(exc: Any) -> str:
    error = getattr(exc, "error", None)
    if error is not None and getattr(error, "message", None):
        return str(error.message)
    return str(getattr(exc, "reason", None) or getattr(exc, "message", None) or exc)


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return min(float(raw), 30.0) if raw else None
    except ValueError:
        return None
