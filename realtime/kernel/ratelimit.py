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
