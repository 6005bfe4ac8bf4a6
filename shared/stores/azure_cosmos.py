"""CustomerStore on Azure Cosmos DB for NoSQL (async SDK). Imported only when COSMOS_ENDPOINT is set.

One container, partitioned on /customer_id, with TTL on (no default: only items that carry a `ttl` expire), holds
three kinds of item:

* customers: `Customer.to_dict()` plus `"type": "customer"`; the item's `_etag` is the model's `version`;
* session bodies: `ChannelSession.to_dict()` plus `{"id": "session:<session id>", "customer_id": <its customer>,
  "type": "session"}`, in the customer's partition;
* identity claims: `{"id": "identity:<key>", "customer_id": "identity:<key>", "type": "identity", "owner": ...}`.
  Each claim is its own logical partition, so "create if absent" on its id is an atomic claim with no cross-partition
  transaction (Cosmos has none).

A write is one transactional batch in the customer's partition: the record's replace, conditional on its ETag,
first, then a replace of each changed body conditional on its own ETag (or a create for a new one). In Azure a
batch is atomic: if any condition fails, nothing is written, and `update` re-reads and tries again. The npm emulator
the tests use checks each condition too and stops at the first failure, but keeps what the operations before it
wrote. Putting the record first makes that harmless for races: every write of a body also replaces the record, and
bodies are read after the record, so a body changed since our read means the record changed too, and the batch
stops at its first operation with nothing written. (Only a create that meets an existing body, which the store
never plans for a race, could leave the record written without it on the emulator.)

A batch takes at most 100 operations: a turn writes two (the record and its session), and a record lists at most
SESSION_INDEX_MAX sessions. Splitting a record written before bodies existed creates one body per session it holds
in one batch, so such a record with more than 99 sessions (over Cosmos's 2 MB item limit long before, with 200
turns each) cannot be split here and keeps failing its writes, as it did before.

Expiry: an anonymous visitor's record, bodies and claims carry a `ttl`, as do closed sessions' bodies (retention);
Cosmos deletes them when it runs out. `expires_at` on the record and claims makes reads ignore them from the exact
moment, whether or not Cosmos has got round to deleting them (the emulator never does).

Throttling (429 after the SDK's own retries), 503/5xx and connection failures become `Unavailable`, so callers can
tell "try again later" from a bug.
"""

from __future__ import annotations

import asyncio
import logging
import time
import math
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import PartitionKey
from azure.cosmos.aio import CosmosClient
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosBatchOperationError,
    CosmosClientTimeoutError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from shared.errors import Conflict, Unavailable
from shared.models import Customer, Identity
from shared.stores import records
from shared.stores.base import CustomerStore
from shared.stores.records import EXPIRY_MARGIN_SECONDS, RecordLimits, SessionIdTaken

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
#: After a request times out, how long every request to the account fails at once (see CosmosContainer.errors): no
#: longer than the Retry-After callers are given, so a client that honours it is not turned away by the cooldown.
STALL_COOLDOWN_SECONDS = DEFAULT_RETRY_AFTER_SECONDS
#: Per account (endpoint): the monotonic time until which it is taken to be stalled.
_stalled_until: dict[str, float] = {}
_STALLS = (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError)
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
        self._account = endpoint
        self.database_name, self.container_name = database, container
        self._partition_key_path, self._default_ttl = partition_key_path, default_ttl
        self._create = create
        self._client = CosmosClient(
            endpoint, credential, connection_verify=verify_tls, user_agent="switchboard", **CLIENT_TIMEOUTS
        )
        self.container = self._client.get_database_client(database).get_container_client(container)
        self._opened = False
        self._opening = asyncio.Lock()  # the first requests may arrive together; enter the client once

    @contextmanager
    def errors(self) -> Iterator[None]:
        """`service_errors()`, and fail at once while this account is stalled.

        A stalled Cosmos (a frozen primary, a blackholed route) costs each request its full timeout, and one event or
        turn makes several requests: without this a webhook would wait tens of seconds to fail. After a request times
        out, every request to the account fails at once for `STALL_COOLDOWN_SECONDS`; then one probes again. The
        Redis adapter does the same (shared/stores/azure_redis.py).
        """
        if time.monotonic() < _stalled_until.get(self._account, 0.0):
            raise Unavailable("Cosmos DB is unavailable (a request timed out moments ago)",
                              retry_after=DEFAULT_RETRY_AFTER_SECONDS)
        try:
            with service_errors():
                yield
        except Unavailable as exc:
            if isinstance(exc.__cause__, _STALLS):
                _stalled_until[self._account] = time.monotonic() + STALL_COOLDOWN_SECONDS
            raise
        _stalled_until.pop(self._account, None)

    async def open(self) -> None:
        if self._opened:
            return
        async with self._opening:
            if self._opened:
                return
            with self.errors():
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
        with self.errors():
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
        limits: RecordLimits | None = None,
    ) -> None:
        # default_ttl -1: TTL on, nothing expires unless it says so (the infrastructure templates set the same).
        self._cosmos = CosmosContainer(
            endpoint, credential, database, container, partition_key_path=PARTITION_KEY_PATH, default_ttl=-1,
            verify_tls=verify_tls,
        )
        self._container = self._cosmos.container
        self.limits = limits or RecordLimits()

    @classmethod
    def from_settings(cls, settings: Settings, limits: RecordLimits | None = None) -> CosmosCustomerStore:
        return cls(
            settings.cosmos_endpoint,
            cosmos_credential(settings),
            settings.cosmos_database,
            settings.cosmos_container,
            verify_tls=settings.cosmos_verify_tls,
            limits=limits,
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
        customer = Customer.from_dict(item, version=item["_etag"])
        # After the record, never before: a body written since the record was read comes with a newer record, so
        # the write this read leads to fails its first condition (see the module docstring).
        wanted = records.bodies_to_load(customer, self.clock())
        found = await asyncio.gather(*(self._read_item(_session_id(sid), customer_id) for sid in wanted))
        return records.attach(customer, {sid: (body, body["_etag"]) for sid, body in zip(wanted, found) if body})

    async def _read_session(self, customer_id: str, session_id: str) -> tuple[dict[str, Any], str] | None:
        item = await self._read_item(_session_id(session_id), customer_id)
        if item is None or item.get("type") != "session" or _lapsed(item, self.clock()):
            return None
        return item, item["_etag"]

    async def _insert(self, customer: Customer) -> Customer:
        plan = self._plan(customer, new=True)
        now = self.clock()
        operations = [("create", (_record_item(plan, now),))] + _body_operations(customer.customer_id, plan, now)
        try:
            results = await self._batch(operations, customer.customer_id)
        except _Failed as failed:
            if failed.index == 0:
                raise Conflict(f"customer {customer.customer_id!r} already exists") from None
            raise failed.error() from None
        return self._written(customer, plan, results)

    async def _replace(self, customer: Customer) -> Customer:
        if customer.version is None:
            raise ValueError("_replace needs the version the record was read at")
        plan = self._plan(customer)
        now = self.clock()
        record = ("replace", (customer.customer_id, _record_item(plan, now)), {"if_match_etag": customer.version})
        try:
            results = await self._batch([record] + _body_operations(customer.customer_id, plan, now), customer.customer_id)
        except _Failed as failed:
            raise failed.error() from None
        return self._written(customer, plan, results)

    async def _delete(self, customer_id: str) -> None:
        # Claims first: a crash half way then leaves an unreachable record, never a claim pointing at nothing
        # (which would make that phone number unusable).
        await self._cosmos.open()
        with self._cosmos.errors():
            claims = self._container.query_items(
                "SELECT c.id, c.customer_id, c._etag FROM c WHERE c.type = 'identity' AND c.owner = @owner",
                parameters=[{"name": "@owner", "value": customer_id}],
            )
            async for claim in claims:
                # Conditional on the ETag we saw: if the claim was released and taken by someone else meanwhile,
                # it is theirs now and stays.
                await self._delete_item(claim["id"], claim["customer_id"], etag=claim["_etag"])
            bodies = self._container.query_items(
                "SELECT c.id FROM c WHERE c.customer_id = @cid AND c.type = 'session'",
                parameters=[{"name": "@cid", "value": customer_id}], partition_key=customer_id,
            )
            async for body in bodies:
                await self._delete_item(body["id"], customer_id)
            await self._delete_item(customer_id, customer_id)

    async def _claim_identity(self, identity: Identity, customer_id: str, expires_at: float | None = None) -> str:
        await self._cosmos.open()
        item_id = _claim_id(identity)
        claim = {"id": item_id, "customer_id": item_id, "type": "identity", "owner": customer_id,
                 **_expiry_fields(expires_at, self.clock(), margin=0)}
        for _ in range(_CLAIM_ATTEMPTS):
            with self._cosmos.errors():
                try:
                    await self._container.create_item(claim)
                    return customer_id
                except CosmosResourceExistsError:
                    pass  # already claimed: whoever holds it wins, unless its claim has lapsed
            held = await self._read_item(item_id, item_id)
            if held is not None and not _lapsed(held, self.clock()):
                return held["owner"]
            if held is not None:  # lapsed, and Cosmos has not deleted it yet: free for the taking
                with self._cosmos.errors():
                    await self._delete_item(item_id, item_id, etag=held["_etag"])
        raise Unavailable(f"{identity.key} keeps being claimed and released", retry_after=DEFAULT_RETRY_AFTER_SECONDS)

    async def _identity_owner(self, identity: Identity) -> str | None:
        item_id = _claim_id(identity)
        item = await self._read_item(item_id, item_id)
        return None if item is None or _lapsed(item, self.clock()) else item["owner"]

    async def _keep_identities(self, customer_id: str) -> None:
        await self._cosmos.open()
        with self._cosmos.errors():
            claims = self._container.query_items(
                "SELECT * FROM c WHERE c.type = 'identity' AND c.owner = @owner AND IS_DEFINED(c.ttl)",
                parameters=[{"name": "@owner", "value": customer_id}],
            )
            async for claim in claims:
                kept = {k: v for k, v in claim.items() if not k.startswith("_") and k not in ("ttl", "expires_at")}
                try:
                    await self._container.replace_item(
                        claim["id"], kept, etag=claim["_etag"], match_condition=MatchConditions.IfNotModified
                    )
                except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                    pass  # released or changed meanwhile: no longer this claim to keep

    # Batches ----------------------------------------------------------------------------------------------------

    async def _batch(self, operations: list[tuple[Any, ...]], partition: str) -> list[dict[str, Any]]:
        await self._cosmos.open()
        with self._cosmos.errors():
            try:
                return list(await self._container.execute_item_batch(operations, partition_key=partition))
            except CosmosBatchOperationError as exc:
                raise _Failed(exc) from None

    def _written(self, customer: Customer, plan: records.WritePlan, results: list[dict[str, Any]]) -> Customer:
        versions = {body.session_id: _etag(result) for body, result in zip(plan.bodies, results[1:])}
        return records.written(customer, plan, _etag(results[0]), versions)

    # Items ------------------------------------------------------------------------------------------------------

    async def _read_item(self, item_id: str, partition: str) -> dict[str, Any] | None:
        await self._cosmos.open()
        with self._cosmos.errors():
            return await read_item_or_none(self._container, item_id, partition, PARTITION_KEY_PATH.lstrip("/"))

    async def _delete_item(self, item_id: str, partition: str, etag: str | None = None) -> None:
        condition = {} if etag is None else {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            await self._container.delete_item(item_id, partition_key=partition, **condition)
        except (CosmosResourceNotFoundError, CosmosAccessConditionFailedError):
            pass  # already gone, or no longer ours


class _Failed(Exception):
    """A batch stopped at operation `index` (0: the record)."""

    def __init__(self, exc: CosmosBatchOperationError) -> None:
        super().__init__(str(exc))
        self.index, self.status = exc.error_index or 0, exc.status_code or 0
        self.exc = exc

    def error(self) -> Exception:
        if self.status in (404, 412):  # 412: someone wrote since we read. 404: gone; `update` re-reads and reports it
            return Conflict(f"the customer record or a session changed since it was read (operation {self.index})")
        if self.status == 409:
            return SessionIdTaken(f"a new session's id is already stored (operation {self.index})")
        if self.status == 429 or self.status == 408 or self.status >= 500:
            return Unavailable(f"Cosmos DB answered {self.status} to a batch", retry_after=DEFAULT_RETRY_AFTER_SECONDS)
        return self.exc


def _record_item(plan: records.WritePlan, now: float) -> dict[str, Any]:
    return {**plan.record, "type": "customer", **_expiry_fields(plan.expires_at, now, margin=EXPIRY_MARGIN_SECONDS)}


def _body_operations(customer_id: str, plan: records.WritePlan, now: float) -> list[tuple[Any, ...]]:
    operations: list[tuple[Any, ...]] = []
    for body in plan.bodies:
        item = {**body.doc, "id": _session_id(body.session_id), "customer_id": customer_id, "type": "session",
                **_expiry_fields(body.expires_at, now, margin=EXPIRY_MARGIN_SECONDS)}
        if body.version is None:
            operations.append(("create", (item,)))
        else:
            operations.append(("replace", (item["id"], item), {"if_match_etag": body.version}))
    return operations


def _expiry_fields(expires_at: float | None, now: float, *, margin: float) -> dict[str, Any]:
    """`ttl` (whole seconds from this write, as Cosmos counts) and `expires_at` (ISO, what reads check)."""
    if expires_at is None:
        return {}
    remaining = expires_at - now
    return {"ttl": max(1, math.ceil(remaining + margin)), "expires_at": records.iso(expires_at)}


def _lapsed(item: dict[str, Any], now: float) -> bool:
    return bool(item.get("expires_at")) and records.epoch(item["expires_at"]) <= now


def _etag(result: dict[str, Any]) -> str:
    return result.get("eTag") or result["resourceBody"]["_etag"]


def _session_id(session_id: str) -> str:
    return f"session:{_escape(session_id)}"


def _claim_id(identity: Identity) -> str:
    return f"identity:{_escape(identity.key)}"


def _escape(key: str) -> str:
    # Cosmos ids may not contain / \ ? #. Percent-encode those (and % itself, so the mapping stays one-to-one);
    # phone numbers and the usual ids pass through unchanged.
    for char, code in (("%", "%25"), ("/", "%2F"), ("\\", "%5C"), ("?", "%3F"), ("#", "%23")):
        key = key.replace(char, code)
    return key


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
