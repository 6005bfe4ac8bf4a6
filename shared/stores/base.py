"""The two storage ports.

CustomerStore holds the customer's durable record (Cosmos DB in Azure, SQLite embedded). SessionState holds hot,
expiring state: per-session scratch data and the ids of events already processed (Redis in Azure, in-process
embedded). Public methods live on the base classes; adapters implement only the `_hooks`, so behaviour such as the
optimistic-concurrency retry loop is written once and tested once against every adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, Callable, TypeVar

from shared.errors import Conflict, NotFound
from shared.models import ChannelSession, Customer, Identity, utcnow
from shared.stores import records
from shared.stores.records import RecordLimits

T = TypeVar("T")

#: How often `update` re-reads and re-applies a mutation after losing a race before it gives up. Each round lets
#: only one of the racing writers through, so the budget must outlast a pile-up: with 50 writers on one record
#: (the contract tests) 12 attempts capped at 0.32 s gave up on a third of them against the Cosmos emulator.
UPDATE_ATTEMPTS = 20
#: Backoff between attempts: uniform in [0, min(cap, base * 2**attempt)] seconds, so the losers spread out.
UPDATE_BACKOFF_BASE = 0.01
UPDATE_BACKOFF_CAP = 1.0


class _KeyedLocks:
    """One asyncio.Lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]


def _record_locks(store: CustomerStore) -> _KeyedLocks:
    # Adapters do not call the base __init__, so the locks are attached on first use.
    locks = store.__dict__.get("_record_locks")
    if locks is None:
        locks = store.__dict__["_record_locks"] = _KeyedLocks()
    return locks


class CustomerStore(ABC):
    """Customers by id, findable by any identity they hold (phone number, web chat session, account).

    A record lists its recent sessions (at most `limits.session_index_max`; shared/stores/records.py) and keeps each
    session's transcript and delivery log (its body) apart, in the same partition. `get` and `update` bring the
    bodies of the sessions still in use: the active ones, the one the latest handoff left, and WhatsApp sessions
    closed in the last two days. Any other session's turns raise TranscriptNotLoaded: read that session whole with
    `get_session(customer_id, session_id)`, which also finds sessions that have aged out of the record's list.

    `update` writes the record and the bodies that changed in one atomic, conditional write, so a turn (customer
    words, replies, active agent, slots collected) lands whole or not at all.

    A web chat visitor who never says anything (no identity but the browser session's) is deleted after
    `limits.anonymous_ttl_seconds`, and never returned once that time has passed; their first word, or any other
    identity, keeps them.
    """

    #: Record size bounds and retention; adapters take their own from the settings.
    limits: RecordLimits = RecordLimits()
    #: The clock expiries are measured on (epoch seconds). Tests set their own.
    clock: Callable[[], float] = staticmethod(time.time)

    async def get(self, customer_id: str) -> Customer:
        customer = await self._load(customer_id)
        if customer is None:
            raise NotFound(f"no customer {customer_id!r}")
        return customer

    async def get_session(self, customer_id: str, session_id: str) -> ChannelSession:
        """One session of the customer, whole (header, transcript, delivery log), whether the record lists it or it
        has aged out of the list. NotFound if the customer has no such session (or its retention has ended)."""
        customer = await self.get(customer_id)
        listed = customer.sessions.get(session_id)
        if listed is not None and listed.loaded:
            return listed
        found = await self._read_session(customer_id, session_id)
        if found is None:
            raise NotFound(f"no session {session_id!r} for this customer")
        doc, _version = found
        return ChannelSession.from_dict({**doc, **(listed.header() if listed is not None else {})})

    async def audit(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's audit, oldest first: each verification step and each disclosure of account data in every
        session the record lists (each session's body holds its own; see ChannelSession.audit), with entries of
        records written before that. Sessions aged out of the list keep theirs in their bodies until their retention
        ends (`get_session` reads one by id)."""
        customer = await self.get(customer_id)
        entries = list(customer.legacy_audit)
        for session_id, listed in customer.sessions.items():
            if listed.loaded:
                entries.extend(listed.audit)
                continue
            found = await self._read_session(customer_id, session_id)
            if found is not None:
                entries.extend(found[0].get("audit") or [])
        return sorted(entries, key=lambda entry: entry.get("at", ""))

    async def find_by_identity(self, identity: Identity) -> Customer | None:
        owner = await self._identity_owner(identity)
        return None if owner is None else await self._load(owner)

    async def get_or_create(self, identity: Identity) -> tuple[Customer, bool]:
        """The one customer holding `identity`, created if nobody does. Returns (customer, created).

        Safe under concurrency: two channels resolving the same new phone number at once get the same record.
        """
        existing = await self.find_by_identity(identity)
        if existing is not None:
            return existing, False
        candidate = await self._insert(Customer.new(identity))
        owner = await self._claim_identity(identity, candidate.customer_id, self._expiry(candidate))
        if owner == candidate.customer_id:
            return candidate, True
        await self._delete(candidate.customer_id)  # lost the race: nobody can reach our orphan, drop it
        return await self.get(owner), False

    async def create(self, customer: Customer) -> Customer:
        """Insert a new record and claim its identities. Raises Conflict if an identity belongs to someone else."""
        stored = await self._insert(customer)
        for identity in customer.identities:
            owner = await self._claim_identity(identity, customer.customer_id, self._expiry(stored))
            if owner != customer.customer_id:
                await self._delete(customer.customer_id)
                raise Conflict(f"{identity.key} already belongs to another customer")
        return stored

    async def update(self, customer_id: str, mutate: Callable[[Customer], T]) -> tuple[Customer, T]:
        """Read, apply `mutate`, write back if nobody wrote in between; otherwise re-read and re-apply.

        `mutate` must be a pure function of the record it is given (it may run several times). Returns the stored
        record and whatever `mutate` returned on the attempt that won.

        Writers to one record in this process take turns: racing each other they would only make each other retry
        (100 at once exhausted the attempts against the Cosmos emulator), so the optimistic retries are left for
        writers in other processes (the media gateway, other function instances).
        """
        async with _record_locks(self).hold(customer_id):
            return await self._update(customer_id, mutate)

    async def _update(self, customer_id: str, mutate: Callable[[Customer], T]) -> tuple[Customer, T]:
        for attempt in range(UPDATE_ATTEMPTS):
            customer = await self.get(customer_id)
            records.expire_idle(customer, self.limits, self.clock())
            result = mutate(customer)
            customer.updated_at = utcnow()
            for session_id in records.headers_changed_unloaded(customer):
                found = await self._read_session(customer_id, session_id)
                if found is not None:
                    records.load_body(customer, session_id, *found)
            if customer.expires_at is not None and not customer.anonymous:
                # Their first word, or a new identity: the claims lose their expiry before the record does, so a
                # crash in between leaves at worst a permanent claim on a browser session nobody reuses.
                await self._keep_identities(customer_id)
            try:
                return await self._replace(customer), result
            except Conflict:
                await asyncio.sleep(random.uniform(0, min(UPDATE_BACKOFF_CAP, UPDATE_BACKOFF_BASE * 2**attempt)))
        raise Conflict(f"customer {customer_id!r} is too contended: gave up after {UPDATE_ATTEMPTS} attempts")

    async def add_identity(self, customer_id: str, identity: Identity) -> Customer:
        """Attach an identity to a customer. Raises Conflict if another customer already holds it."""
        owner = await self._claim_identity(identity, customer_id)
        if owner != customer_id:
            raise Conflict(f"{identity.key} already belongs to another customer")
        customer, _ = await self.update(customer_id, lambda c: c.add_identity(identity))
        return customer

    async def close(self) -> None:
        """Release connections. The default holds none."""

    async def _load(self, customer_id: str) -> Customer | None:
        customer = await self._read(customer_id)
        if customer is None or records.expired(customer, self.clock()):
            return None  # an expired visitor is gone, whether or not the backend has deleted it yet
        return customer

    def _plan(self, customer: Customer, *, new: bool = False) -> records.WritePlan:
        return records.plan_write(customer, self.limits, self.clock(), new=new)

    @staticmethod
    def _expiry(customer: Customer) -> float | None:
        return records.epoch(customer.expires_at) if customer.expires_at else None

    # Adapter hooks ----------------------------------------------------------------------------------------------

    @abstractmethod
    async def _read(self, customer_id: str) -> Customer | None:
        """The stored record with its `version` set and the bodies `records.bodies_to_load` names attached
        (`records.attach`), or None."""

    @abstractmethod
    async def _read_session(self, customer_id: str, session_id: str) -> tuple[dict[str, Any], str] | None:
        """A session's stored body (`ChannelSession.to_dict()`) and its version, or None."""

    @abstractmethod
    async def _insert(self, customer: Customer) -> Customer:
        """Store a new record and its sessions' bodies (`self._plan(customer, new=True)`) at once; raise Conflict if
        the id exists. Returns it with `version` set (`records.written`)."""

    @abstractmethod
    async def _replace(self, customer: Customer) -> Customer:
        """Write `self._plan(customer)` atomically: the record if its stored version equals `customer.version`, and
        each planned body if its own version still matches (created if it has none); if any check fails, write
        nothing and raise Conflict. Returns the customer with its new versions (`records.written`)."""

    @abstractmethod
    async def _delete(self, customer_id: str) -> None:
        """Remove a record, its sessions' bodies and any identity claims pointing at it; no error if absent."""

    @abstractmethod
    async def _claim_identity(self, identity: Identity, customer_id: str, expires_at: float | None = None) -> str:
        """Atomically record `customer_id` as the owner of `identity` unless it has a live owner; return the owner.
        With `expires_at` (epoch seconds) the claim lapses then, unless `_keep_identities` runs first."""

    @abstractmethod
    async def _identity_owner(self, identity: Identity) -> str | None:
        """The customer id owning `identity` (by a claim that has not lapsed), or None."""

    @abstractmethod
    async def _keep_identities(self, customer_id: str) -> None:
        """Remove the expiry from every identity claim of `customer_id`."""


class SessionState(ABC):
    """Hot, expiring key-value state shared by every instance of the app."""

    @abstractmethod
    async def get(self, key: str) -> dict[str, Any] | None:
        """The value stored under `key`, or None if absent or expired."""

    @abstractmethod
    async def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        """Store a JSON-serialisable dict under `key` for `ttl_seconds`."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove `key`; no error if absent."""

    @abstractmethod
    async def mark_processed(self, event_id: str, ttl_seconds: float) -> bool:
        """Atomically record that `event_id` is being handled. True the first time only, within the TTL.

        Inbound handlers call this before any side effect, so a redelivered event has no second effect.
        """

    @abstractmethod
    async def release_processed(self, event_id: str) -> None:
        """Forget `event_id`, so its next delivery is handled; no error if it was never marked.

        A handler that fails after marking calls this before re-raising: the event source's redelivery must get
        through, or a transient failure would lose the event for good.
        """

    @abstractmethod
    async def increment(self, key: str, amount: int = 1) -> int:
        """Atomically add `amount` (may be negative) to the counter `key` (absent = 0); return the new value.

        Counters (queue depth, calls in progress) do not expire: they describe the present, not a session.
        """

    @abstractmethod
    async def set_counter(self, key: str, value: int) -> None:
        """Set the counter `key` to `value` (operators correcting or driving the queue metrics)."""

    async def counter(self, key: str) -> int:
        """The counter's current value (0 when absent)."""
        return await self.increment(key, 0)

    @abstractmethod
    async def merge(self, key: str, changes: dict[str, Any], ttl_seconds: float) -> dict[str, Any]:
        """Atomically set the top-level fields in `changes` on the dict stored under `key` (created if absent), keep
        the other fields, (re)set its TTL; return the merged dict. Concurrent merges of different fields lose nothing.
        Readable with `get(key)` like any value.

        Records that several writers update at once (a call's record, fed by concurrent callbacks) use this instead
        of get-then-put, which loses whichever write lands first.
        """

    @abstractmethod
    async def acquire_lease(self, key: str, ttl_seconds: float) -> int | None:
        """Take the lease `key` if nobody holds a live one. Returns a fencing token strictly greater than every token
        issued for this key before (monotonic across processes); None if someone else holds it.

        Adapters remember a key's last token for LEASE_MEMORY_SECONDS after its lease ends and never issue one below
        the wall clock in milliseconds (`next_fencing_token`), so tokens keep rising after that memory is gone too.
        """

    @abstractmethod
    async def renew_lease(self, key: str, token: int, ttl_seconds: float) -> bool:
        """Extend the lease while `token` still holds it; False if it expired or another holder has it."""

    @abstractmethod
    async def release_lease(self, key: str, token: int) -> None:
        """Release the lease if `token` holds it; nothing otherwise (never another holder's)."""

    @abstractmethod
    async def hit(self, key: str, window_seconds: float) -> int:
        """Count one hit in the fixed rate-limit window `key`: the count starts at 1 on the first hit and the window
        (and its count) expires `window_seconds` after that first hit. Returns the count including this hit."""

    @abstractmethod
    async def add_member(self, key: str, member: str, ttl_seconds: float) -> None:
        """Put `member` in the set `key` until `ttl_seconds` from now (from now again if it was there already).

        Members expire one by one, the set never as a whole: counts built on it (calls waiting, calls in progress)
        forget a member whose removal never came (a crash, a lost event) instead of counting it for ever.
        """

    @abstractmethod
    async def remove_member(self, key: str, member: str) -> bool:
        """Take `member` out of the set `key`. True if it was there and live; False otherwise (no error)."""

    @abstractmethod
    async def count_members(self, key: str) -> int:
        """How many live members the set `key` has (0 when it has none)."""

    @abstractmethod
    async def members(self, key: str) -> list[str]:
        """The live members of the set `key`, in no particular order (empty when it has none)."""

    async def close(self) -> None:
        """Release connections. The default holds none."""


#: How long an adapter remembers a lease key's last fencing token after the lease ends. Past it, the wall clock
#: alone keeps new tokens above old ones (see `next_fencing_token`), which an hour of clock skew would be needed to
#: defeat.
LEASE_MEMORY_SECONDS = 3600.0


def next_fencing_token(last: int | None, now_seconds: float) -> int:
    """The token for a new lease: above the key's last one, and never below the wall clock in milliseconds.

    The clock floor is what keeps tokens rising when the store forgot the last one (its memory expired, or Redis
    restarted empty): a fencing check that remembers a token of ours must not refuse every later holder.
    """
    return max((last or 0) + 1, int(now_seconds * 1000))


def check_ttl(ttl_seconds: float) -> None:
    """Refuse a TTL or window that is not a positive number of seconds (0, negative, NaN)."""
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")
