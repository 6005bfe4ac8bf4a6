"""SessionState on Redis (Azure Managed Redis in Azure): shared by every instance of the function app.

Imported only when REDIS_URL is set, so the embedded stack never pays for importing redis.

Values are hashes, one field per top-level key holding that key's JSON, so `merge` sets fields atomically on the
server (HSET, PEXPIRE and HGETALL in one MULTI/EXEC) with no read-modify-write and no retries. Leases and rate-limit
windows are small Lua scripts, each atomic on the server.

Sign-in: a password in REDIS_URL is used as given (a local or self-hosted Redis). A `rediss://` URL without one
signs in with Microsoft Entra ID, as the app's managed identity: no key exists to leak or rotate
(`EntraCredentialProvider`; infra/modules/redis.bicep assigns the identity the database's access policy).
"""

from __future__ import annotations

import base64
import json
import math
import time
from typing import TYPE_CHECKING, Any, Awaitable, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.credentials import CredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.errors import Unavailable
from shared.stores.base import LEASE_MEMORY_SECONDS, SessionState

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

T = TypeVar("T")

#: What Azure Managed Redis takes Microsoft Entra tokens for.
ENTRA_SCOPE = "https://redis.azure.com/.default"

#: Socket timeouts, seconds. Every command we send is O(1), so anything slower than this is an outage, and a webhook
#: that waits longer than a few seconds is worse than one that fails and is redelivered.
SOCKET_TIMEOUT = 3.0
#: What callers are told to wait before trying again when Redis is unreachable.
RETRY_AFTER_SECONDS = 1.0
#: After a command times out, how long every command fails at once without touching the network. A hung Redis (a
#: blackholed network, a frozen primary) costs each command its full socket timeout; a turn sends several, so without
#: this a customer would wait tens of seconds per message. Then one command probes again. A refused connection (Redis
#: down, restarting) fails in milliseconds by itself and needs no cooldown, so recovery is seen at once.
OUTAGE_COOLDOWN_SECONDS = 2.0

_STATE = "sb:state:"
_EVENT = "sb:event:"
_COUNTER = "sb:count:"
_LEASE = "sb:lease:"
_HIT = "sb:hit:"
_SET = "sb:set:"  # a sorted set: each member scored by when it expires (epoch ms)

#: Every stored value's hash holds this field, so an empty dict is still a hash (Redis drops a hash with no fields).
_MARK = b""
#: The prefix of a value's own fields, so that none of them can be the mark.
_FIELD = "."

# The lease is a hash {token, until} (until: the server's clock, ms) kept LEASE_MEMORY_SECONDS past its end so the
# next token is above it. Tokens come from the server's clock, as `next_fencing_token` does: max(last + 1, now ms).
# Numbers go out through %d: Lua would print a 13-digit number as 1.7e+12.
_LUA_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
_ACQUIRE = _LUA_NOW + """
local lease = redis.call('HMGET', KEYS[1], 'token', 'until')
if lease[2] and tonumber(lease[2]) > now then return false end
local token = math.max(tonumber(lease[1] or '0') + 1, now)
redis.call('HSET', KEYS[1], 'token', string.format('%d', token), 'until', string.format('%d', now + tonumber(ARGV[1])))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]))
return token
"""
_RENEW = _LUA_NOW + """
local lease = redis.call('HMGET', KEYS[1], 'token', 'until')
if lease[1] ~= ARGV[1] or not lease[2] or tonumber(lease[2]) <= now then return 0 end
redis.call('HSET', KEYS[1], 'until', string.format('%d', now + tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]))
return 1
"""
_RELEASE = _LUA_NOW + """
local lease = redis.call('HMGET', KEYS[1], 'token', 'until')
if lease[1] == ARGV[1] and lease[2] and tonumber(lease[2]) > now then
  redis.call('HSET', KEYS[1], 'until', string.format('%d', now))
end
return 1
"""
# INCR and the window's expiry together: a crash between them would leave a count that never expires.
_HIT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def signs_in_with_entra(url: str) -> bool:
    """A TLS URL without a password: sign in with Microsoft Entra ID rather than a key."""
    parts = urlsplit(url)
    return parts.scheme == "rediss" and not parts.password


class EntraCredentialProvider(CredentialProvider):
    """Signs each new Redis connection in as `AUTH <object id> <Entra access token>`.

    The credential (the managed identity) caches its token and renews it before expiry, so asking it per connection
    is cheap. Azure Managed Redis closes a connection whose token has expired; the client's retry on a dropped
    connection reopens it, signed in with a fresh token.
    """

    def __init__(self, credential: AsyncTokenCredential) -> None:
        self._credential = credential

    async def get_credentials_async(self) -> tuple[str, str]:
        token = (await self._credential.get_token(ENTRA_SCOPE)).token
        return _object_id(token), token

    def get_credentials(self) -> tuple[str, str]:
        raise NotImplementedError("the asyncio client asks get_credentials_async")


def _object_id(access_token: str) -> str:
    """The identity's object id (`oid`), which Redis takes as the user name. Read, not verified: Entra issued the
    token to us, and Redis verifies it."""
    try:
        payload = access_token.split(".")[1]
        oid = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["oid"]
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        raise Unavailable("the Entra token for Redis carries no object id (oid)") from exc
    if not isinstance(oid, str) or not oid:
        raise Unavailable("the Entra token for Redis carries no object id (oid)")
    return oid


class RedisSessionState(SessionState):
    def __init__(self, url: str, credential: AsyncTokenCredential | None = None) -> None:
        """`credential`: sign in with Microsoft Entra ID (`url` must then carry no password)."""
        # redis-py's default retries ten times with backoff on top of each timeout, which hides an outage for tens
        # of seconds. Two quick retries ride out a dropped idle connection (Azure closes them) and no more.
        self._redis = aioredis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            # Only a dropped connection is retried: a timeout means Redis is not answering, and trying again would
            # triple the wait (measured: 9 s per command against a frozen Redis).
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2,
                        supported_errors=(RedisConnectionError,)),
            health_check_interval=30,
            credential_provider=EntraCredentialProvider(credential) if credential is not None else None,
        )
        self._credential = credential
        self._down_until = 0.0  # monotonic time until which Redis is taken to be down
        # Scripts run by EVALSHA, loaded again by the client if the server forgot them (a restart).
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._hit = self._redis.register_script(_HIT_SCRIPT)

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            return _decode(await self._call(self._redis.hgetall(_STATE + key)))
        except ResponseError as exc:
            if not _wrong_type(exc):
                raise
        raw = await self._call(self._redis.get(_STATE + key))  # written as one JSON string before values were hashes
        return None if raw is None else json.loads(raw)

    async def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        name, ttl = _STATE + key, _millis(ttl_seconds)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(name).hset(name, mapping=_encode(value)).pexpire(name, ttl)
        await self._call(pipe.execute())

    async def merge(self, key: str, changes: dict[str, Any], ttl_seconds: float) -> dict[str, Any]:
        name, ttl = _STATE + key, _millis(ttl_seconds)
        for _ in range(2):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(name, mapping=_encode(changes)).pexpire(name, ttl).hgetall(name)
            try:
                return _decode((await self._call(pipe.execute()))[-1]) or {}
            except ResponseError as exc:
                if not _wrong_type(exc):
                    raise
            await self._call(self._rewrite_as_hash(name))
        raise Unavailable(f"state {key!r} keeps changing its type", retry_after=RETRY_AFTER_SECONDS)

    async def delete(self, key: str) -> None:
        await self._call(self._redis.delete(_STATE + key))

    async def mark_processed(self, event_id: str, ttl_seconds: float) -> bool:
        # SET NX is the atomic "first one wins": Redis answers OK to exactly one caller and nil to the rest.
        return bool(await self._call(self._redis.set(_EVENT + event_id, "1", nx=True, px=_millis(ttl_seconds))))

    async def release_processed(self, event_id: str) -> None:
        await self._call(self._redis.delete(_EVENT + event_id))

    async def increment(self, key: str, amount: int = 1) -> int:
        return int(await self._call(self._redis.incrby(_COUNTER + key, amount)))

    async def set_counter(self, key: str, value: int) -> None:
        await self._call(self._redis.set(_COUNTER + key, int(value)))

    async def acquire_lease(self, key: str, ttl_seconds: float) -> int | None:
        token = await self._call(self._acquire(keys=[_LEASE + key], args=[_millis(ttl_seconds), _MEMORY_MS]))
        return None if token is None else int(token)

    async def renew_lease(self, key: str, token: int, ttl_seconds: float) -> bool:
        renewed = await self._call(
            self._renew(keys=[_LEASE + key], args=[str(int(token)), _millis(ttl_seconds), _MEMORY_MS])
        )
        return renewed == 1

    async def release_lease(self, key: str, token: int) -> None:
        await self._call(self._release(keys=[_LEASE + key], args=[str(int(token))]))

    async def hit(self, key: str, window_seconds: float) -> int:
        return int(await self._call(self._hit(keys=[_HIT + key], args=[_millis(window_seconds)])))

    async def add_member(self, key: str, member: str, ttl_seconds: float) -> None:
        name, now = _SET + key, _now_ms()
        pipe = self._redis.pipeline(transaction=True)
        pipe.zremrangebyscore(name, "-inf", now).zadd(name, {member: now + _millis(ttl_seconds)})
        await self._call(pipe.execute())

    async def remove_member(self, key: str, member: str) -> bool:
        pipe = self._redis.pipeline(transaction=True)
        pipe.zscore(_SET + key, member).zrem(_SET + key, member)
        expires, _ = await self._call(pipe.execute())
        return expires is not None and expires > _now_ms()

    async def count_members(self, key: str) -> int:
        return int(await self._call(self._redis.zcount(_SET + key, f"({_now_ms()}", "+inf")))

    async def members(self, key: str) -> list[str]:
        found = await self._call(self._redis.zrangebyscore(_SET + key, f"({_now_ms()}", "+inf"))
        return [m.decode() if isinstance(m, bytes) else str(m) for m in found]

    async def close(self) -> None:
        await self._redis.aclose()
        if self._credential is not None and (close := getattr(self._credential, "close", None)):
            await close()

    async def _call(self, command: Awaitable[T]) -> T:
        now = time.monotonic()
        if now < self._down_until:
            if close := getattr(command, "close", None):
                close()  # a coroutine we never await: nothing goes out, and no "never awaited" warning
            raise Unavailable("Redis is unavailable (it failed moments ago)", retry_after=RETRY_AFTER_SECONDS)
        if self._down_until:
            # The cooldown is over: this command probes, and commands arriving meanwhile keep failing fast.
            self._down_until = now + SOCKET_TIMEOUT + OUTAGE_COOLDOWN_SECONDS
        try:
            result = await command
        except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError) as exc:
            # ReadOnlyError: a replica answered during a failover; the primary is back in seconds.
            timed_out = isinstance(exc, RedisTimeoutError)
            self._down_until = time.monotonic() + OUTAGE_COOLDOWN_SECONDS if timed_out else 0.0
            raise Unavailable(f"Redis is unavailable: {exc}", retry_after=RETRY_AFTER_SECONDS) from exc
        self._down_until = 0.0
        return result


    async def _rewrite_as_hash(self, name: str) -> None:
        """Turn a value stored as one JSON string (before values were hashes) into a hash, keeping its expiry."""
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(name)  # another writer converting or replacing it meanwhile makes EXEC fail: we retry
            if await pipe.type(name) != b"string":
                return
            raw, ttl = await pipe.get(name), await pipe.pttl(name)
            pipe.multi()
            pipe.delete(name).hset(name, mapping=_encode(json.loads(raw)))
            if ttl > 0:
                pipe.pexpire(name, ttl)
            try:
                await pipe.execute()
            except WatchError:
                pass


def _encode(value: dict[str, Any]) -> dict[bytes | str, str]:
    return {_MARK: "1", **{_FIELD + name: json.dumps(field) for name, field in value.items()}}


def _decode(fields: dict[bytes, bytes]) -> dict[str, Any] | None:
    if not fields:
        return None
    return {name.decode()[len(_FIELD):]: json.loads(raw) for name, raw in fields.items() if name != _MARK}


def _wrong_type(exc: ResponseError) -> bool:
    return "WRONGTYPE" in str(exc)  # a pipeline prefixes the command it was


#: LEASE_MEMORY_SECONDS for the scripts.
_MEMORY_MS = int(LEASE_MEMORY_SECONDS * 1000)


def _now_ms() -> int:
    # The instance's wall clock: member expiries are compared across instances, which Azure keeps NTP-synchronised.
    return int(time.time() * 1000)


def _millis(ttl_seconds: float) -> int:
    # PX rather than EX: the port takes fractional seconds, and EX would round a sub-second TTL down to an error.
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")
    return max(1, math.ceil(ttl_seconds * 1000))
