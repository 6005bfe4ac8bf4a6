"""SessionState on Azure Cosmos DB for NoSQL: hot state when the deployment has no Redis (`redisSku=none`).

Imported only when the factory picks it. One container, partitioned on /id, with time-to-live switched on and no
default expiry (`defaultTtl: -1`), holds three kinds of item, each in its own logical partition:

* state:   `{"id": "state:<key>", "value": {...}, "expires_at": <epoch s>, "ttl": <s>}`
* events:  `{"id": "event:<id>", "expires_at": ..., "ttl": ...}`; "create if absent" is the atomic first-one-wins
  (409 means someone already has it);
* counters: `{"id": "count:<key>", "value": n}`, changed with a server-side patch `incr`, which is atomic; they
  carry no `ttl`, so they never expire.

Expiry is decided by `expires_at`, checked on every read, not by Cosmos purging the item: the purge runs in the
background some time after the TTL (and the local emulator never purges), while a caller must never see a value past
its time. The per-item `ttl` (rounded up, plus a second for clock skew) only lets Cosmos delete the garbage.
`expires_at` is wall-clock time, shared by every instance; Azure keeps instance clocks NTP-synchronised.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Callable

from azure.core import MatchConditions
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from shared.errors import Unavailable
from shared.stores.azure_cosmos import (
    DEFAULT_RETRY_AFTER_SECONDS, CosmosContainer, cosmos_credential, read_item_or_none, service_errors,
)
from shared.stores.base import SessionState

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.settings import Settings

log = logging.getLogger(__name__)

PARTITION_KEY_PATH = "/id"
#: Cosmos ids are at most 255 characters; a longer key is stored under a digest of itself.
MAX_ID_LENGTH = 255
#: Seconds added to the item's `ttl` so Cosmos never purges an item its reader would still call live.
PURGE_GRACE_SECONDS = 1
#: Rounds of "create, or read what is there" before giving up. A round only repeats when the item vanished (a
#: purge or delete) between our two requests, so a few are plenty.
_ATTEMPTS = 5

_STATE = "state:"
_EVENT = "event:"
_COUNTER = "count:"


class CosmosSessionState(SessionState):
    def __init__(
        self,
        endpoint: str,
        credential: str | AsyncTokenCredential,
        database: str,
        container: str,
        *,
        verify_tls: bool = True,
        create_container: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        # TTL on, with no default expiry: each item carries its own.
        self._cosmos = CosmosContainer(
            endpoint, credential, database, container, partition_key_path=PARTITION_KEY_PATH, default_ttl=-1,
            verify_tls=verify_tls, create=create_container,
        )
        self._container = self._cosmos.container

    @classmethod
    def from_settings(cls, settings: Settings) -> CosmosSessionState:
        return cls(
            settings.cosmos_endpoint,
            cosmos_credential(settings),
            settings.cosmos_database,
            settings.cosmos_state_container,
            verify_tls=settings.cosmos_verify_tls,
            # A key means an emulator or a developer's account: make the container if missing. With managed
            # identity the infrastructure made it, and the data-plane role could not.
            create_container=bool(settings.cosmos_key),
        )

    async def ensure(self) -> None:
        """Create the database and the container (TTL on, no default expiry) if missing. Local runs and tests."""
        await self._cosmos.create_if_missing()

    # The port ---------------------------------------------------------------------------------------------------

    async def get(self, key: str) -> dict[str, Any] | None:
        item = await self._read(_item_id(_STATE, key))
        if item is None or self._expired(item):
            return None
        return item["value"]

    async def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        item = {"id": _item_id(_STATE, key), "value": value, **self._expiry(ttl_seconds)}
        await self._cosmos.open()
        with service_errors():
            await self._container.upsert_item(item)

    async def delete(self, key: str) -> None:
        await self._delete(_item_id(_STATE, key))

    async def mark_processed(self, event_id: str, ttl_seconds: float) -> bool:
        item_id = _item_id(_EVENT, event_id)
        item = {"id": item_id, **self._expiry(ttl_seconds)}
        await self._cosmos.open()
        for _ in range(_ATTEMPTS):
            with service_errors():
                try:
                    await self._container.create_item(item)
                    return True
                except CosmosResourceExistsError:
                    pass
            existing = await self._read(item_id)
            if existing is None:
                continue  # purged or deleted since our create: try again
            if not self._expired(existing):
                return False
            # Expired but not yet purged: take it over, on condition nobody else did since we read it.
            with service_errors():
                try:
                    await self._container.replace_item(
                        item_id, item, etag=existing["_etag"], match_condition=MatchConditions.IfNotModified
                    )
                    return True
                except CosmosAccessConditionFailedError:
                    return False  # another delivery took it over first
                except CosmosResourceNotFoundError:
                    continue
        raise Unavailable(f"event {event_id!r} keeps appearing and vanishing", retry_after=DEFAULT_RETRY_AFTER_SECONDS)

    async def release_processed(self, event_id: str) -> None:
        await self._delete(_item_id(_EVENT, event_id))

    async def increment(self, key: str, amount: int = 1) -> int:
        item_id = _item_id(_COUNTER, key)
        await self._cosmos.open()
        for _ in range(_ATTEMPTS):
            with service_errors():
                try:
                    item = await self._container.patch_item(
                        item_id,
                        partition_key=item_id,
                        patch_operations=[{"op": "incr", "path": "/value", "value": int(amount)}],
                    )
                    return int(item["value"])
                except CosmosResourceNotFoundError:
                    pass
                try:
                    await self._container.create_item({"id": item_id, "value": int(amount)})
                    return int(amount)
                except CosmosResourceExistsError:
                    continue  # another caller created it first: add to theirs
        raise Unavailable(f"counter {key!r} keeps appearing and vanishing", retry_after=DEFAULT_RETRY_AFTER_SECONDS)

    async def set_counter(self, key: str, value: int) -> None:
        await self._cosmos.open()
        with service_errors():
            await self._container.upsert_item({"id": _item_id(_COUNTER, key), "value": int(value)})

    async def counter(self, key: str) -> int:
        # A read, not the base class's increment by 0: a patch is a write and costs several times the RUs.
        item = await self._read(_item_id(_COUNTER, key))
        return 0 if item is None else int(item["value"])

    async def close(self) -> None:
        await self._cosmos.close()

    # Items ------------------------------------------------------------------------------------------------------

    def _expiry(self, ttl_seconds: float) -> dict[str, Any]:
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")
        return {"expires_at": self._clock() + ttl_seconds, "ttl": math.ceil(ttl_seconds) + PURGE_GRACE_SECONDS}

    def _expired(self, item: dict[str, Any]) -> bool:
        return item["expires_at"] <= self._clock()

    async def _read(self, item_id: str) -> dict[str, Any] | None:
        await self._cosmos.open()
        with service_errors():
            return await read_item_or_none(self._container, item_id, item_id, "id")

    async def _delete(self, item_id: str) -> None:
        await self._cosmos.open()
        with service_errors():
            try:
                await self._container.delete_item(item_id, partition_key=item_id)
            except CosmosResourceNotFoundError:
                pass


def _item_id(prefix: str, key: str) -> str:
    # Cosmos ids may not contain / \ ? #: percent-encode them, and % itself so the mapping stays one-to-one, and ~
    # so that no encoded key can look like the digest form below.
    for char, code in (("%", "%25"), ("/", "%2F"), ("\\", "%5C"), ("?", "%3F"), ("#", "%23"), ("~", "%7E")):
        key = key.replace(char, code)
    item_id = prefix + key
    if len(item_id) > MAX_ID_LENGTH:
        item_id = f"{prefix}~{hashlib.sha256(key.encode()).hexdigest()}"
    return item_id
