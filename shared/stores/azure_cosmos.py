"""CustomerStore on Azure Cosmos DB for NoSQL (async SDK). Imported only when COSMOS_ENDPOINT is set.

One container, partitioned on /customer_id, holds two kinds of item:

* customers: `Customer.to_dict()` plus `"type": "customer"`; the item's `_etag` is the model's `version`, and a
  replace is conditional on it, which gives the optimistic concurrency `CustomerStore.update` relies on;
* identity claims: `{"id": "identity:<key>", "customer_id": "identity:<key>", "type": "identity", "owner": ...}`.
  Each claim is its own logical partition, so "create if absent" on its id is an atomic claim with no cross-partition
  transaction (Cosmos has none).

Throttling (429 after the SDK's own retries), 503/5xx and connection failures become `Unavailable`, so callers can
tell "try again later" from a bug.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import PartitionKey
from azure.cosmos.aio import CosmosClient
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosClientTimeoutError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from shared.errors import Conflict, Unavailable
from shared.models import Customer, Identity
from shared.stores.base import CustomerStore

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.settings import Settings

log = logging.getLogger(__name__)

PARTITION_KEY_PATH = "/customer_id"
#: What callers are told to wait when Cosmos is unreachable and gave no hint of its own.
DEFAULT_RETRY_AFTER_SECONDS = 1.0
#: Bounds on each Cosmos request, so an unreachable or stalled Cosmos fails a customer's turn in seconds (a 503 with
#: Retry-After) instead of after the SDK defaults: a 5 s connect timeout tried 4 times (22 s) and a 65 s read timeout.
#: Point reads and writes take milliseconds; these are generous for them and for our small queries.
CLIENT_TIMEOUTS: dict[str, Any] = {"connection_timeout": 2, "read_timeout": 5, "retry_connect": 1}
#: Claiming retries when the claim it collided with vanished before we could read its owner (its customer was being
#: deleted). Each round trip is a create and a read, so a handful is plenty.
_CLAIM_ATTEMPTS = 5


class CosmosContainer:
    """One container of one account, as both Cosmos adapters hold it.

    Constructing it does no I/O (cold start and the store factories stay cheap). The first request enters the client
    once, which reads the account's regions and consistency level: without that a session-consistency account would
    not give us read-your-writes. With `create`, that first request also makes the database and container if they
    are missing (an emulator or a developer's account; in Azure the templates made them).
    """

    def __init__(
        self,
        endpoint: str,
        credential: str | AsyncTokenCredential,
        database: str,
        container: str,
        *,
        partition_key_path: str,
        default_ttl: int | None = None,
        verify_tls: bool = True,
        create: bool = False,
    ) -> None:
        self._credential = credential
        self.database_name, self.container_name = database, container
        self._partition_key_path, self._default_ttl = partition_key_path, default_ttl
        self._create = create
        self._client = CosmosClient(
            endpoint, credential, connection_verify=verify_tls, user_agent="switchboard", **CLIENT_TIMEOUTS
        )
        self.container = self._client.get_database_client(database).get_container_client(container)
        self._opened = False
        self._opening = asyncio.Lock()  # the first requests may arrive together; enter the client once

    async def open(self) -> None:
        if self._opened:
            return
        async with self._opening:
            if self._opened:
                return
            with service_errors():
                await self._client.__aenter__()
                if self._create:
                    await self._create_if_missing()
            self._opened = True

    async def create_if_missing(self) -> None:
        """Create the database and container if missing. For local runs and tests only.

        In Azure the infrastructure templates create both, and the app's identity holds only the data-plane role,
        which may not create them: the 403 that answers is logged and ignored, since the resources exist.
        """
        await self.open()
        with service_errors():
            await self._create_if_missing()

    async def close(self) -> None:
        await self._client.close()
        if not isinstance(self._credential, str):
            await self._credential.close()

    async def _create_if_missing(self) -> None:
        ttl = {} if self._default_ttl is None else {"default_ttl": self._default_ttl}
        try:
            database = await self._client.create_database_if_not_exists(self.database_name)
            await database.create_container_if_not_exists(
                self.container_name, partition_key=PartitionKey(path=self._partition_key_path), **ttl
            )
        except CosmosHttpResponseError as exc:
            if exc.status_code != 403:
                raise
            log.info("Cosmos refused to create %s/%s (403); assuming the infrastructure did",
                     self.database_name, self.container_name)


class CosmosCustomerStore(CustomerStore):
    def __init__(
        self,
        endpoint: str,
        credential: str | AsyncTokenCredential,
        database: str,
        container: str,
        *,
        verify_tls: bool = True,
    ) -> None:
        self._cosmos = CosmosContainer(
            endpoint, credential, database, container, partition_key_path=PARTITION_KEY_PATH, verify_tls=verify_tls
        )
        self._container = self._cosmos.container

    @classmethod
    def from_settings(cls, settings: Settings) -> CosmosCustomerStore:
        return cls(
            settings.cosmos_endpoint,
            cosmos_credential(settings),
            settings.cosmos_database,
            settings.cosmos_container,
            verify_tls=settings.cosmos_verify_tls,
        )

    async def ensure(self) -> None:
        """Create the database and container if missing (local runs and tests; see CosmosContainer)."""
        await self._cosmos.create_if_missing()

    async def close(self) -> None:
        await self._cosmos.close()

    # Hooks ------------------------------------------------------------------------------------------------------

    async def _read(self, customer_id: str) -> Customer | None:
        item = await self._read_item(customer_id, customer_id)
        if item is None or item.get("type") != "customer":  # an id from outside must not reach a claim item
            return None
        return Customer.from_dict(item, version=item["_etag"])

    async def _insert(self, customer: Customer) -> Customer:
        await self._cosmos.open()
        with service_errors():
            try:
                item = await self._container.create_item(_customer_item(customer))
            except CosmosResourceExistsError:
                raise Conflict(f"customer {customer.customer_id!r} already exists") from None
        return Customer.from_dict(item, version=item["_etag"])

    async def _replace(self, customer: Customer) -> Customer:
        if customer.version is None:
            raise ValueError("_replace needs the version the record was read at")
        await self._cosmos.open()
        with service_errors():
            try:
                item = await self._container.replace_item(
                    customer.customer_id,
                    _customer_item(customer),
                    etag=customer.version,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                # 412: someone wrote since we read. 404: the record is gone; `update` re-reads and reports it.
                raise Conflict(f"customer {customer.customer_id!r} changed since it was read") from None
        return Customer.from_dict(item, version=item["_etag"])

    async def _delete(self, customer_id: str) -> None:
        # Claims first: a crash half way then leaves an unreachable record, never a claim pointing at nothing
        # (which would make that phone number unusable).
        await self._cosmos.open()
        with service_errors():
            claims = self._container.query_items(
                "SELECT c.id, c.customer_id, c._etag FROM c WHERE c.type = 'identity' AND c.owner = @owner",
                parameters=[{"name": "@owner", "value": customer_id}],
            )
            async for claim in claims:
                # Conditional on the ETag we saw: if the claim was released and taken by someone else meanwhile,
                # it is theirs now and stays.
                await self._delete_item(claim["id"], claim["customer_id"], etag=claim["_etag"])
            await self._delete_item(customer_id, customer_id)

    async def _claim_identity(self, identity: Identity, customer_id: str) -> str:
        await self._cosmos.open()
        item_id = _claim_id(identity)
        for _ in range(_CLAIM_ATTEMPTS):
            with service_errors():
                try:
                    await self._container.create_item(
                        {"id": item_id, "customer_id": item_id, "type": "identity", "owner": customer_id}
                    )
                    return customer_id
                except CosmosResourceExistsError:
                    pass  # already claimed: whoever holds it wins
            owner = await self._identity_owner(identity)
            if owner is not None:
                return owner
        raise Unavailable(f"{identity.key} keeps being claimed and released", retry_after=DEFAULT_RETRY_AFTER_SECONDS)

    async def _identity_owner(self, identity: Identity) -> str | None:
        item_id = _claim_id(identity)
        item = await self._read_item(item_id, item_id)
        return None if item is None else item["owner"]

    # Items ------------------------------------------------------------------------------------------------------

    async def _read_item(self, item_id: str, partition: str) -> dict[str, Any] | None:
        await self._cosmos.open()
        with service_errors():
            return await read_item_or_none(self._container, item_id, partition, PARTITION_KEY_PATH.lstrip("/"))

    async def _delete_item(self, item_id: str, partition: str, etag: str | None = None) -> None:
        condition = {} if etag is None else {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            await self._container.delete_item(item_id, partition_key=partition, **condition)
        except (CosmosResourceNotFoundError, CosmosAccessConditionFailedError):
            pass  # already gone, or no longer ours


def _customer_item(customer: Customer) -> dict[str, Any]:
    return {**customer.to_dict(), "type": "customer"}


def _claim_id(identity: Identity) -> str:
    # Cosmos ids may not contain / \ ? #. Percent-encode those (and % itself, so the mapping stays one-to-one);
    # phone numbers and the usual ids pass through unchanged as "identity:<key>".
    key = identity.key
    for char, code in (("%", "%25"), ("/", "%2F"), ("\\", "%5C"), ("?", "%3F"), ("#", "%23")):
        key = key.replace(char, code)
    return f"identity:{key}"


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn "Cosmos cannot serve this now" into Unavailable; let anything else (a bug, a 400/401/403) through."""
    try:
        yield
    except CosmosHttpResponseError as exc:
        status = exc.status_code or 0
        if status == 429:
            retry_ms = (exc.headers or {}).get("x-ms-retry-after-ms")
            retry_after = float(retry_ms) / 1000 if retry_ms else DEFAULT_RETRY_AFTER_SECONDS
            raise Unavailable("Cosmos DB is throttling requests (429)", retry_after=retry_after) from exc
        if status == 408 or status >= 500:
            raise Unavailable(f"Cosmos DB answered {status}", retry_after=DEFAULT_RETRY_AFTER_SECONDS) from exc
        raise
    except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as exc:
        raise Unavailable(f"Cosmos DB is unreachable: {exc}", retry_after=DEFAULT_RETRY_AFTER_SECONDS) from exc


def cosmos_credential(settings: Settings) -> str | AsyncTokenCredential:
    """The account key when one is set (an emulator, a developer's account), else Entra ID via the managed identity."""
    if settings.cosmos_key:
        return settings.cosmos_key
    from azure.identity.aio import DefaultAzureCredential  # only the keyless path needs azure-identity

    return DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None)


async def read_item_or_none(container: Any, item_id: str, partition: str, partition_field: str) -> dict[str, Any] | None:
    """The item, or None if it does not exist.

    The npm emulator answers a read of a missing item with 500 rather than 404. Rather than take every 500 for
    "absent" (in Azure that would hide an outage and could mint a duplicate customer), ask again with a query, which
    answers an empty page for a missing item on both.
    """
    try:
        return await container.read_item(item_id, partition_key=partition)
    except CosmosResourceNotFoundError:
        return None
    except CosmosHttpResponseError as exc:
        if exc.status_code != 500:
            raise
    found = container.query_items(
        f"SELECT * FROM c WHERE c.{partition_field} = @pk AND c.id = @id",
        parameters=[{"name": "@pk", "value": partition}, {"name": "@id", "value": item_id}],
        partition_key=partition,
    )
    async for item in found:
        return item
    return None
