"""Rate limits of the domains' writes, counted atomically in Redis so they hold under concurrency.

Each hit increments one counter per client and window (Redis INCR), so exactly the allowed
number get through, whichever process or transport (REST, either socket route) they come from.
(DRF's own throttles read a request history, decide, then write it back: simultaneous requests
all read the same history and all pass.)

The window slides: a request counts in full in its own period and fades out over the next,
weighed by how much of the previous period still lies within the last one (whole requests
only), as Cloudflare's rate limiter does
(https://blog.cloudflare.com/counting-things-a-lot-of-different-things/). Aligned windows let
a client spend the whole rate at the end of one period and again at the start of the next;
here that burst is one request over the rate. A refused request is not counted, so a client
that retries too early is not held off for longer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from .redis_pool import thread_commands

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """`"30/min"` → (30, 60): requests allowed, per this many seconds."""
    number, _, period = rate.partition("/")
    seconds = _PERIODS.get(period.strip()[:1].lower())
    if not number.strip().isdigit() or seconds is None:
        raise ValueError(f"A rate is 'N/s', 'N/min', 'N/hour' or 'N/day', not {rate!r}.")
    return int(number), seconds


class SlidingWindowLimit:
    """At most N hits a period per client, for one kind of write (`scope`).

    `clock` gives the time in seconds since the epoch; tests move it instead of sleeping.
    """

    def __init__(self, scope: str, *, clock: Callable[[], float] = time.time) -> None:
        self.scope = scope
        self.clock = clock

    def take(self, *, who: str, rate: str) -> int | None:
        """Count one hit by `who` (`"user:<id>"`, `"addr:<address>"`) within `rate`.

        None when it is allowed; else the whole seconds until one more would be, if no other
        comes meanwhile.
        """
        allowed, period = parse_rate(rate)
        window, into = divmod(self.clock(), period)
        key = cache.make_key(f"throttle:{self.scope}:{who}:{int(window)}")
        earlier_key = cache.make_key(f"throttle:{self.scope}:{who}:{int(window) - 1}")
        try:
            # One round trip, on the request thread's own connection: this is on the path of
            # every enqueue, and redis-py's pipeline costs more CPU than the round trip.
            _, count, earlier_raw = thread_commands(
                [("SET", key, 0, "EX", 2 * period + 1, "NX"), ("INCR", key), ("GET", earlier_key)],
                url=counters_url(),
            )
            earlier = int(earlier_raw or 0)
        except (RedisError, ValueError):
            # Limits protect the service; when Redis is down, the database's own limits
            # (the active jobs cap) still hold, and refusing every write would be worse.
            logger.warning("rate limit %s not counted: cache unavailable", self.scope)
            return None
        fading = math.floor(earlier * (1 - into / period))  # the previous period's weight
        if fading + count <= allowed:
            return None
        try:
            thread_commands([("DECR", key)], url=counters_url())
        except (RedisError, ValueError):
            logger.warning("rate limit %s: a refused request stays counted", self.scope)
        # Simultaneous refused requests are still counted until each takes itself back out:
        # no more than `allowed` were let through.
        return math.ceil(retry_after(allowed, period, into, earlier, min(count - 1, allowed)))

    def give_back(self, *, who: str, rate: str) -> None:
        """Uncount a hit that `take` let through but that did not happen after all.

        A retried write that names one already done (a `client_id` seen before) is answered
        with it, and spends no budget. The current window's count never goes below zero.
        """
        _, period = parse_rate(rate)
        window = int(self.clock() // period)
        key = cache.make_key(f"throttle:{self.scope}:{who}:{window}")
        try:
            thread_commands([("EVAL", _GIVE_BACK, 1, key)], url=counters_url())
        except RedisError:
            logger.warning("rate limit %s: a write not done stays counted", self.scope)


def retry_after(allowed: int, period: int, into: float, earlier: int, counted: int) -> float:
    """Seconds until one more request fits, if no other comes meanwhile.

    `counted` requests were let through in this period, `into` seconds into it, and
    `earlier` in the one before.
    """
    room = allowed - counted - 1  # what the previous period may still weigh by then
    if room >= 0:
        # within this period, once enough of the previous one has faded out
        wait = (1 - (room + 1) / earlier) * period - into if earlier else 0.0
    else:
        # in the next period, this one then being the one that fades out
        wait = (period - into) + max(0.0, 1 - allowed / counted) * period
    return max(1.0, wait)


_GIVE_BACK = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


def counters_url() -> str:
    """The Redis of the default cache, where the counters live (its keys made by the cache)."""
    return str(settings.CACHES["default"]["LOCATION"])


class LatestValueGate:
    """At most one write a window per key, and the last value never lost.

    `offer` answers WRITE for the first value in a window (the caller writes it now); later
    ones are held in Redis, the highest kept (the values only grow: read positions), and the
    first held one answers SCHEDULE: the caller has a trailing write done `window` seconds
    later, which `take`s the held value. Until that write, every value is held (HELD), so
    the trailing write and a new first write never fall in the same window; `take` opens the
    next window itself. With Redis down every value is a WRITE: the database's own bounds
    still hold, and losing a write would be worse.
    """

    WRITE = "write"
    SCHEDULE = "schedule"
    HELD = "held"

    def __init__(self, scope: str, *, window: float) -> None:
        self.scope = scope
        self.window_ms = max(1, int(window * 1000))

    def _keys(self, who: str) -> list[str]:
        base = cache.make_key(f"gate:{self.scope}:{who}")
        return [f"{base}:open", f"{base}:held", f"{base}:due"]

    def offer(self, *, who: str, value: int) -> str:
        """Offer `value` for `who`: WRITE it now, SCHEDULE a trailing write, or HELD."""
        try:
            (answer,) = thread_commands(
                [("EVAL", _OFFER, 3, *self._keys(who), value, self.window_ms)],
                url=counters_url(),
            )
        except RedisError:
            logger.warning("gate %s not kept: cache unavailable", self.scope)
            return self.WRITE
        return answer.decode() if isinstance(answer, bytes) else str(answer)

    def take(self, *, who: str) -> int | None:
        """The held value for the trailing write (None: none held), opening the next window."""
        try:
            (held,) = thread_commands(
                [("EVAL", _TAKE, 3, *self._keys(who), self.window_ms)], url=counters_url()
            )
        except RedisError:
            logger.warning("gate %s: held value lost, cache unavailable", self.scope)
            return None
        return None if held is None else int(held)


# KEYS: open (a write happened in this window), held (highest value held), due (a trailing
# write is scheduled). A due write that never comes (the worker away) is given up after 30
# windows: values are written directly again.
_OFFER = """
local function hold()
  local held = tonumber(redis.call('GET', KEYS[2]) or '-1')
  if tonumber(ARGV[1]) > held then
    redis.call('SET', KEYS[2], ARGV[1], 'PX', 30 * tonumber(ARGV[2]))
  end
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  hold()
  return 'held'
end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
  return 'write'
end
hold()
redis.call('SET', KEYS[3], '1', 'PX', 30 * tonumber(ARGV[2]))
return 'schedule'
"""

_TAKE = """
local held = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[2], KEYS[3])
if held then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return held
"""
