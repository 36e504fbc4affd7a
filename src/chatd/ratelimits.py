"""Requests and tokens per minute per key: in this process, or shared through Redis.

Each limit is a bucket that refills continuously (GCRA: one number per limit, the time
at which the bucket will be full again), as OpenAI's limits replenish: a key with
`rpm = 60` gets a request back every second, and a burst of 60 at most. Unlike fixed
one-minute windows it cannot admit twice the limit across a window's edge, and it needs
no list of timestamps.

- A request is admitted while one request is free, and while the tokens used in the
  last minute are under `tpm`; admission counts the request, not its tokens.
- When an answer ends, its real usage (prompt + completion) is debited. A request may
  so overshoot the limit; the debt blocks the key for at most one more minute.

With Redis both steps are one Lua script each, run atomically on Redis's own clock, so
every instance sharing that Redis sees the same buckets and admits the limit in total.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal, Protocol

from chatd.keys import Key

log = logging.getLogger("chatd")

PERIOD_MS = 60_000.0
MAX_DEBT_MS = 2 * PERIOD_MS  # a bucket is never more than one minute past empty
EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Window:
    """One limit as a response reports it."""

    limit: int
    remaining: int
    used: int
    reset_ms: int  # until the bucket is full again


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one admission check."""

    allowed: bool
    exceeded: Literal["requests", "tokens"] | None = None
    retry_after_ms: int = 0
    requests: Window | None = None
    tokens: Window | None = None


UNCHECKED = Verdict(True)  # what a check answers when the shared store cannot be reached


class Limiter(Protocol):
    async def start(self) -> None: ...

    async def check(self, key: Key) -> Verdict:
        """Admit one request of `key` (and count it) or refuse it."""
        ...

    async def spend(self, key: Key, tokens: int) -> None:
        """Debit the tokens an answer used; completes even if the caller is cancelled."""
        ...

    async def close(self) -> None: ...


def _window(tat: float, now: float, limit: int) -> Window:
    per = PERIOD_MS / limit
    ahead = max(tat - now, 0.0)
    remaining = min(max(math.floor((PERIOD_MS - ahead) / per + EPSILON), 0), limit)
    used = math.ceil(ahead / per - EPSILON)
    return Window(limit, remaining, used, math.ceil(ahead))


class MemoryLimiter:
    """Buckets in this process: each instance limits on its own."""

    def __init__(self) -> None:
        self.tat: dict[str, float] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def check(self, key: Key) -> Verdict:
        now = time.monotonic() * 1000
        exceeded: Literal["requests", "tokens"] | None = None
        wait = 0.0
        if key.tpm is not None:
            tat = max(self.tat.get(key.principal + ":t", now), now)
            late = tat - now - (PERIOD_MS - PERIOD_MS / key.tpm)
            if late > EPSILON:
                exceeded, wait = "tokens", late
        if key.rpm is not None:
            tat = max(self.tat.get(key.principal + ":r", now), now)
            late = tat + PERIOD_MS / key.rpm - now - PERIOD_MS
            if late > EPSILON:
                exceeded, wait = "requests", max(wait, late)
            elif exceeded is None:
                self.tat[key.principal + ":r"] = tat + PERIOD_MS / key.rpm
        return self._verdict(key, now, exceeded, wait)

    def _verdict(
        self, key: Key, now: float, exceeded: Literal["requests", "tokens"] | None, wait: float
    ) -> Verdict:
        requests = tokens = None
        if key.rpm is not None:
            requests = _window(self.tat.get(key.principal + ":r", now), now, key.rpm)
        if key.tpm is not None:
            tokens = _window(self.tat.get(key.principal + ":t", now), now, key.tpm)
        return Verdict(exceeded is None, exceeded, math.ceil(wait), requests, tokens)

    async def spend(self, key: Key, tokens: int) -> None:
        if key.tpm is None or tokens <= 0:
            return
        now = time.monotonic() * 1000
        name = key.principal + ":t"
        tat = max(self.tat.get(name, now), now) + tokens * PERIOD_MS / key.tpm
        self.tat[name] = min(tat, now + MAX_DEBT_MS)


# KEYS: requests bucket, tokens bucket. ARGV: rpm, tpm (0 = no such limit).
# Returns allowed, exceeded (0 none, 1 requests, 2 tokens), retry-after ms, then
# remaining, used and reset ms of the requests and of the tokens bucket.
CHECK = """
local period = 60000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local function tat_of(key)
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then return now end
  return tat
end
local function window(tat, limit)
  local per = period / limit
  local ahead = tat - now
  local remaining = math.floor((period - ahead) / per + 1e-6)
  if remaining < 0 then remaining = 0 end
  if remaining > limit then remaining = limit end
  return remaining, math.ceil(ahead / per - 1e-6), math.ceil(ahead)
end
local exceeded, wait = 0, 0
local rtat, ttat = now, now
if tpm > 0 then
  ttat = tat_of(KEYS[2])
  local late = ttat - now - (period - period / tpm)
  if late > 1e-6 then exceeded, wait = 2, late end
end
if rpm > 0 then
  rtat = tat_of(KEYS[1])
  local late = rtat + period / rpm - now - period
  if late > 1e-6 then
    exceeded = 1
    if late > wait then wait = late end
  elseif exceeded == 0 then
    rtat = rtat + period / rpm
    redis.call('SET', KEYS[1], string.format('%.3f', rtat), 'PX', math.ceil(rtat - now) + 1000)
  end
end
local out = {exceeded == 0 and 1 or 0, exceeded, math.ceil(wait), 0, 0, 0, 0, 0, 0}
if rpm > 0 then out[4], out[5], out[6] = window(rtat, rpm) end
if tpm > 0 then out[7], out[8], out[9] = window(ttat, tpm) end
return out
"""

# KEYS: tokens bucket. ARGV: tpm, tokens used.
SPEND = """
local period = 60000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
tat = tat + tonumber(ARGV[2]) * period / tonumber(ARGV[1])
if tat > now + 2 * period then tat = now + 2 * period end
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
return 1
"""

EXCEEDED: dict[int, Literal["requests", "tokens"] | None] = {0: None, 1: "requests", 2: "tokens"}


def redis_keys(key: Key) -> list[str]:
    # the hash tag keeps both buckets of a key in one Redis Cluster slot
    return [f"chatd:rl:{{{key.principal}}}:r", f"chatd:rl:{{{key.principal}}}:t"]


class RedisLimiter:
    """Buckets in Redis, shared by every instance that uses the same Redis.

    If Redis cannot be reached once running, requests are served unchecked (and the
    failure logged): limits must not turn a Redis outage into a chatd outage.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.pending: set[asyncio.Task[None]] = set()
        self.last_warning = 0.0
        self.failures: tuple[type[Exception], ...] = ()

    async def start(self) -> None:
        from redis.asyncio import ConnectionPool, Redis
        from redis.exceptions import RedisError

        # not the blocking pool: its condition variable costs ~60 us a check; a
        # connection per concurrent check, kept, and 4,096 at most
        pool = ConnectionPool.from_url(
            self.url, max_connections=4096, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self.redis = Redis(connection_pool=pool)
        self.failures = (RedisError, OSError, asyncio.TimeoutError)
        self.check_script = self.redis.register_script(CHECK)
        self.spend_script = self.redis.register_script(SPEND)
        await self.redis.ping()

    async def close(self) -> None:
        if self.pending:
            await asyncio.wait(self.pending, timeout=2)
        await self.redis.aclose()

    async def check(self, key: Key) -> Verdict:
        try:
            out = await self.check_script(keys=redis_keys(key), args=[key.rpm or 0, key.tpm or 0])
        except self.failures as exc:
            self._warn(exc)
            return UNCHECKED
        requests = tokens = None
        if key.rpm is not None:
            requests = Window(key.rpm, int(out[3]), int(out[4]), int(out[5]))
        if key.tpm is not None:
            tokens = Window(key.tpm, int(out[6]), int(out[7]), int(out[8]))
        return Verdict(bool(out[0]), EXCEEDED[int(out[1])], int(out[2]), requests, tokens)

    async def spend(self, key: Key, tokens: int) -> None:
        if key.tpm is None or tokens <= 0:
            return
        # a task, not awaited: the answer does not wait a Redis round trip for it, and a
        # stream cancelled by its client's leaving is still counted. Its command is sent
        # at the loop's next turn, long before this client's next request can be checked.
        task = asyncio.ensure_future(self._spend(key, tokens))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _spend(self, key: Key, tokens: int) -> None:
        try:
            await self.spend_script(keys=redis_keys(key)[1:], args=[key.tpm or 0, tokens])
        except self.failures as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self.last_warning > 10:
            self.last_warning = now
            log.warning("rate limits unchecked: Redis failed: %s", exc)


def create_limiter(redis_url: str | None) -> Limiter:
    return RedisLimiter(redis_url) if redis_url else MemoryLimiter()


def check_redis(url: str) -> None:
    """Ping Redis once before serving; one line and exit if it cannot be used."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise SystemExit(f"chatd: cannot use --redis-url: {exc}") from None
