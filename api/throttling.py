"""Rate limits of REST writes, counted atomically in Redis so they hold under concurrency.

DRF's own throttles read a request history, decide, then write it back: simultaneous
requests all read the same history and all pass. Here each request increments one counter
per client and window (Redis INCR), so exactly the allowed number get through. Windows are
fixed (aligned on the period); `Retry-After` is the time left in the current one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """`"30/min"` → (30, 60): requests allowed, per this many seconds."""
    number, _, period = rate.partition("/")
    seconds = _PERIODS.get(period.strip()[:1].lower())
    if not number.strip().isdigit() or seconds is None:
        raise ValueError(f"A rate is 'N/s', 'N/min', 'N/hour' or 'N/day', not {rate!r}.")
    return int(number), seconds


class WindowRateThrottle(BaseThrottle):
    """At most N requests a period per user, or per client address for anonymous callers."""

    scope: str = ""
    rate_setting: str = ""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        allowed, period = parse_rate(getattr(settings, self.rate_setting))
        user = request.user
        who = (
            f"user:{user.pk}"
            if user and user.is_authenticated
            else f"addr:{self.get_ident(request)}"
        )
        now = time.time()
        window = int(now // period)
        key = f"throttle:{self.scope}:{who}:{window}"
        try:
            cache.add(key, 0, timeout=period + 1)
            count = cache.incr(key)
        except (RedisError, ValueError):
            # Limits protect the service; when Redis is down, the database's own limits
            # (the active jobs cap) still hold, and refusing every write would be worse.
            logger.warning("rate limit %s not counted: cache unavailable", self.scope)
            return True
        self._wait = (window + 1) * period - now
        return bool(count <= allowed)

    def wait(self) -> float | None:
        return self._wait


class EnqueueThrottle(WindowRateThrottle):
    """`POST /api/jobs/`: JOBS_ENQUEUE_RATE."""

    scope = "jobs_enqueue"
    rate_setting = "JOBS_ENQUEUE_RATE"


class ChatPostThrottle(WindowRateThrottle):
    """`POST /api/rooms/{slug}/messages/`: CHAT_POST_RATE."""

    scope = "chat_post"
    rate_setting = "CHAT_POST_RATE"
