"""SessionState on Azure Cosmos DB for NoSQL: hot state when the deployment has no Redis (`redisSku=none`).

Imported only when the factory picks it. One container, partitioned on /id, with time-to-live switched on and no
default expiry (`defaultTtl: -1`), holds three kinds of item, each in its own logical partition:

* state:   `{"id": "state:<key>", "value": {...}, "expires_at": <epoch s>, "ttl": <s>}`
* events:  `{"id": "event:<id>", "expires_at": ..., "ttl": ...}`; "create if absent" is the atomic first-one-wins
  (409 means someone already has it);
* counters: `{"id": "count:<key>", "value": n}`, changed with a server-side patch `incr`, which is atomic; they
  carry no `ttl`, so they never expire;
* leases:  `{"id": "lease:<key>", "token": n, "expires_at": <lease end>, "ttl": <lease + LEASE_MEMORY_SECONDS>}`,
  kept past the lease's end so the next token is above this one;
* rate-limit windows: `{"id": "hit:<key>", "count": n, "expires_at": ..., "ttl": ...}`;
* sets: `{"id": "set:<key>", "members": {"m<digest of member>": <expires_at>, ...}}`, never expiring as a whole;
  members are set and removed by patch, and expired ones are pruned when the set is counted.

`merge` and `hit` are server-side patches (`set` fields, `incr` the count) conditioned on the item being live
(`filter_predicate` on `expires_at`), so concurrent writers never overwrite each other and need no retries. Only
when there is nothing live to patch (absent, or expired but not yet purged), or a merge has more fields than one
patch may carry, is the whole item written, on condition (create if absent, replace if its ETag is unchanged).

Expiry is decided by `expires_at`, checked on every read, not by Cosmos purging the item: the purge runs in the
background some time after the TTL (and the local emulator never purges), while a caller must never see a value past
its time. The per-item `ttl` (rounded up, plus a second for clock skew) only lets Cosmos delete the garbage.
`expires_at` is wall-clock time, shared by every instance; Azure keeps instance clocks NTP-synchronised.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from typing import TYPE_CHECKING, Any, Callable

from azure.core import MatchConditions
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from shared.errors import SwitchboardError, Unavailable
from shared.stores.azure_cosmos import (
    DEFAULT_RETRY_AFTER_SECONDS, CosmosContainer, cosmos_credential, read_item_or_none,
)
from shared.stores.base import LEASE_MEMORY_SECONDS, SessionState, check_ttl, next_fencing_token

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
#: Rounds for a write that may lose a race to another writer (a conditional create or replace); each round lets one
#: writer through, so the budget outlasts a pile-up of a few dozen, with a jittered backoff between rounds.
_RACE_ATTEMPTS = 30
_RACE_BACKOFF_CAP = 0.2
#: Cosmos takes at most 10 operations per patch; a merge also sets `expires_at` and `ttl`.
_PATCH_FIELDS = 8

_STATE = "state:"
_EVENT = "event:"
_COUNTER = "count:"
_LEASE = "lease:"
_HIT = "hit:"
_SET = "set:"


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
        with self._cosmos.errors():
            await self._container.upsert_item(item)

    async def delete(self, key: str) -> None:
        await self._delete(_item_id(_STATE, key))

    async def mark_processed(self, event_id: str, ttl_seconds: float) -> bool:
        item_id = _item_id(_EVENT, event_id)
        item = {"id": item_id, **self._expiry(ttl_seconds)}
        await self._cosmos.open()
        for _ in range(_ATTEMPTS):
            with self._cosmos.errors():
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
            with self._cosmos.errors():
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
            with self._cosmos.errors():
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
        with self._cosmos.errors():
            await self._container.upsert_item({"id": _item_id(_COUNTER, key), "value": int(value)})

    async def counter(self, key: str) -> int:
        # A read, not the base class's increment by 0: a patch is a write and costs several times the RUs.
        item = await self._read(_item_id(_COUNTER, key))
        return 0 if item is None else int(item["value"])

    async def merge(self, key: str, changes: dict[str, Any], ttl_seconds: float) -> dict[str, Any]:
        item_id, expiry = _item_id(_STATE, key), self._expiry(ttl_seconds)
        patch = [*({"op": "set", "path": f"/value/{name}", "value": value} for name, value in changes.items()),
                 *({"op": "set", "path": f"/{name}", "value": value} for name, value in expiry.items())]
        for attempt in range(_RACE_ATTEMPTS):
            if _patchable(changes) and (item := await self._patch_live(item_id, patch)) is not None:
                return item["value"]
            existing = await self._read(item_id)
            value = changes if existing is None or self._expired(existing) else {**existing["value"], **changes}
            if await self._write_over(existing, {"id": item_id, "value": value, **expiry}):
                return value
            await _backoff(attempt)
        raise Unavailable(f"state {key!r} is too contended", retry_after=DEFAULT_RETRY_AFTER_SECONDS)

    async def acquire_lease(self, key: str, ttl_seconds: float) -> int | None:
        check_ttl(ttl_seconds)
        item_id = _item_id(_LEASE, key)
        for _ in range(_ATTEMPTS):
            existing, now = await self._read(item_id), self._clock()
            if existing is not None and existing["expires_at"] > now:
                return None
            token = next_fencing_token(existing and existing["token"], now)
            lease = {"id": item_id, "token": token, **self._lease_expiry(now, ttl_seconds)}
            if await self._write_over(existing, lease):
                return token
            # Another acquirer wrote first: read again, which normally finds their live lease.
        raise Unavailable(f"lease {key!r} keeps changing hands", retry_after=DEFAULT_RETRY_AFTER_SECONDS)

    async def renew_lease(self, key: str, token: int, ttl_seconds: float) -> bool:
        check_ttl(ttl_seconds)
        now = self._clock()
        patch = [{"op": "set", "path": f"/{name}", "value": value}
                 for name, value in self._lease_expiry(now, ttl_seconds).items()]
        return await self._patch_live(_item_id(_LEASE, key), patch, f"c.token = {int(token)}") is not None

    async def release_lease(self, key: str, token: int) -> None:
        # The item stays (ended) until Cosmos purges it, so the next token is above this one.
        patch = [{"op": "set", "path": "/expires_at", "value": self._clock()}]
        await self._patch_live(_item_id(_LEASE, key), patch, f"c.token = {int(token)}")

    async def hit(self, key: str, window_seconds: float) -> int:
        item_id = _item_id(_HIT, key)
        for attempt in range(_RACE_ATTEMPTS):
            if (item := await self._patch_live(item_id, [{"op": "incr", "path": "/count", "value": 1}])) is not None:
                return int(item["count"])
            existing = await self._read(item_id)
            if existing is not None and not self._expired(existing):
                continue  # created by another hit since our patch: count on it
            if await self._write_over(existing, {"id": item_id, "count": 1, **self._expiry(window_seconds)}):
                return 1
            await _backoff(attempt)
        raise Unavailable(f"rate-limit window {key!r} is too contended", retry_after=DEFAULT_RETRY_AFTER_SECONDS)

    async def add_member(self, key: str, member: str, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
        item_id, name, expires = _item_id(_SET, key), _member(member), self._clock() + ttl_seconds
        await self._cosmos.open()
        for _ in range(_ATTEMPTS):
            with self._cosmos.errors():
                try:
                    await self._container.patch_item(
                        item_id, partition_key=item_id,
                        patch_operations=[{"op": "set", "path": f"/members/{name}", "value": expires},
                                          {"op": "set", "path": f"/names/{name}", "value": member}],
                    )
                    return
                except CosmosResourceNotFoundError:
                    pass
                try:
                    await self._container.create_item({"id": item_id, "members": {name: expires},
                                                       "names": {name: member}})
                    return
                except CosmosResourceExistsError:
                    continue  # another member's add created the set first: patch it
        raise Unavailable(f"set {key!r} keeps appearing and vanishing", retry_after=DEFAULT_RETRY_AFTER_SECONDS)

    async def remove_member(self, key: str, member: str) -> bool:
        item_id, name = _item_id(_SET, key), _member(member)
        await self._cosmos.open()
        with self._cosmos.errors():
            try:
                # Only a live member is removed here (and reported removed); an expired one is pruned by counting.
                await self._container.patch_item(
                    item_id, partition_key=item_id, patch_operations=[{"op": "remove", "path": f"/members/{name}"}],
                    filter_predicate=f"FROM c WHERE c.members.{name} > {self._clock()!r}",
                )
            except (CosmosResourceNotFoundError, CosmosAccessConditionFailedError):
                return False
        await self._forget_names(item_id, [name])
        return True

    async def count_members(self, key: str) -> int:
        item_id = _item_id(_SET, key)
        item = await self._read(item_id)
        if item is None:
            return 0
        now = self._clock()
        members = item.get("members", {})
        expired = [name for name, expires in members.items() if expires <= now]
        if expired:
            await self._prune(item_id, expired[:_PATCH_FIELDS], now)
        return len(members) - len(expired)

    async def members(self, key: str) -> list[str]:
        # Members are stored by digest (see _member); `names` maps each digest back to the member it stands for.
        item = await self._read(_item_id(_SET, key)) or {}
        now, names = self._clock(), item.get("names", {})
        return [names[name] for name, expires in item.get("members", {}).items() if expires > now and name in names]

    async def close(self) -> None:
        await self._cosmos.close()

    # Items ------------------------------------------------------------------------------------------------------

    def _expiry(self, ttl_seconds: float) -> dict[str, Any]:
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")
        return {"expires_at": self._clock() + ttl_seconds, "ttl": math.ceil(ttl_seconds) + PURGE_GRACE_SECONDS}

    def _lease_expiry(self, now: float, ttl_seconds: float) -> dict[str, Any]:
        return {"expires_at": now + ttl_seconds, "ttl": math.ceil(ttl_seconds + LEASE_MEMORY_SECONDS) + PURGE_GRACE_SECONDS}

    def _expired(self, item: dict[str, Any]) -> bool:
        return item["expires_at"] <= self._clock()

    async def _patch_live(self, item_id: str, operations: list[dict[str, Any]], condition: str = "") -> dict[str, Any] | None:
        """Apply `operations` to the item on the server if it is live (and meets `condition`); None otherwise."""
        # Lower-case names only: the emulator lower-cases the predicate.
        predicate = f"FROM c WHERE c.expires_at > {self._clock()!r}" + (f" AND {condition}" if condition else "")
        await self._cosmos.open()
        with self._cosmos.errors():
            try:
                return await self._container.patch_item(
                    item_id, partition_key=item_id, patch_operations=operations, filter_predicate=predicate
                )
            except (CosmosResourceNotFoundError, CosmosAccessConditionFailedError):
                return None

    async def _prune(self, item_id: str, names: list[str], now: float) -> None:
        """Remove expired members, on condition they are still expired (an add may have renewed one meanwhile)."""
        predicate = " AND ".join(f"c.members.{name} <= {now!r}" for name in names)
        with self._cosmos.errors():
            try:
                await self._container.patch_item(
                    item_id, partition_key=item_id,
                    patch_operations=[{"op": "remove", "path": f"/members/{name}"} for name in names],
                    filter_predicate=f"FROM c WHERE {predicate}",
                )
            except (CosmosResourceNotFoundError, CosmosAccessConditionFailedError):
                return  # someone changed the set since we read it: the next count prunes again
        await self._forget_names(item_id, names)

    async def _forget_names(self, item_id: str, names: list[str]) -> None:
        """Drop the names of members that are gone, so the set's item does not grow with every member it ever had.
        Best effort: a name left behind costs a few bytes, and a member added again writes it again."""
        try:
            with self._cosmos.errors():
                await self._container.patch_item(
                    item_id, partition_key=item_id,
                    patch_operations=[{"op": "remove", "path": f"/names/{name}"} for name in names],
                    filter_predicate="FROM c WHERE " + " AND ".join(
                        f"IS_DEFINED(c.names.{name}) AND NOT IS_DEFINED(c.members.{name})" for name in names),
                )
        except (SwitchboardError, CosmosHttpResponseError) as exc:
            log.debug("left member names behind in %s: %s", item_id, exc)

    async def _write_over(self, existing: dict[str, Any] | None, item: dict[str, Any]) -> bool:
        """Create `item`, or replace `existing` with it, on condition nobody wrote it since; False if someone did."""
        await self._cosmos.open()
        with self._cosmos.errors():
            try:
                if existing is None:
                    await self._container.create_item(item)
                else:
                    await self._container.replace_item(
                        item["id"], item, etag=existing["_etag"], match_condition=MatchConditions.IfNotModified
                    )
                return True
            except (CosmosResourceExistsError, CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                return False

    async def _read(self, item_id: str) -> dict[str, Any] | None:
        await self._cosmos.open()
        with self._cosmos.errors():
            return await read_item_or_none(self._container, item_id, item_id, "id")

    async def _delete(self, item_id: str) -> None:
        await self._cosmos.open()
        with self._cosmos.errors():
            try:
                await self._container.delete_item(item_id, partition_key=item_id)
            except CosmosResourceNotFoundError:
                pass


def _member(member: str) -> str:
    # A digest in lower-case hex behind a letter: a plain property name in patch paths and predicates, whatever the
    # member is (the emulator lower-cases predicates, and Cosmos would need / and ~ escaped). Sets are only counted.
    return "m" + hashlib.sha256(member.encode()).hexdigest()[:32]


def _patchable(changes: dict[str, Any]) -> bool:
    # A name with / or ~ would need JSON Pointer escapes in the patch path; such merges take the whole-item path.
    return len(changes) <= _PATCH_FIELDS and all(name and not set(name) & {"/", "~"} for name in changes)


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, min(_RACE_BACKOFF_CAP, 0.01 * 2**attempt)))


def _item_id(prefix: str, key: str) -> str:
    # Cosmos ids may not contain / \ ? #: percent-encode them, and % itself so the mapping stays one-to-one, and ~
    # so that no encoded key can look like the digest form below.
    for char, code in (("%", "%25"), ("/", "%2F"), ("\\", "%5C"), ("?", "%3F"), ("#", "%23"), ("~", "%7E")):
        key = key.replace(char, code)
    item_id = prefix + key
    if len(item_id) > MAX_ID_LENGTH:
        item_id = f"{prefix}~{hashlib.sha256(key.encode()).hexdigest()}"
    return item_id
