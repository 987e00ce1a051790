"""One beat at a time, however many are started: `CELERY_BEAT_SCHEDULER` is `SingleBeatScheduler`.

Celery's beat sends every periodic task once per beat process: a second one started by
mistake (or a deployment that runs one per host) would send each of them twice. This
scheduler sends only while it holds a lock in Redis (`BeatLock`), renewed at every tick; any
other beat stays on standby, and takes over within BEAT_LOCK_SECONDS once the holder stops or
dies. Beat's tasks are safe to run twice (each takes its rows first), so the lock is about
not doubling the work, not about correctness.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from typing import Any

import redis
from celery.beat import PersistentScheduler
from django.conf import settings

logger = logging.getLogger(__name__)

LOCK_KEY = "switchboard:beat"
# Renew the lock only if this beat holds it; delete it only if it does.
RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"  # noqa: E501
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"  # noqa: E501


class BeatLock:
    """Held by one beat at a time; it lapses BEAT_LOCK_SECONDS after the holder last renewed."""

    def __init__(self, url: str, seconds: float, key: str = LOCK_KEY) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.key = key
        self.ttl_ms = int(seconds * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held: bool | None = None  # not asked yet: the first answer is logged

    def hold(self) -> bool:
        """Take the lock, or renew it if held; whether this beat holds it now."""
        try:
            held = bool(
                self.client.set(self.key, self.token, nx=True, px=self.ttl_ms)
                or self.client.eval(RENEW, 1, self.key, self.token, self.ttl_ms)
            )
        except redis.RedisError as exc:
            logger.warning("beat lock unavailable (%r): not sending", exc)
            held = False
        if held != self.held:
            logger.warning("beat %s: %s", self.token, "sending" if held else "on standby")
        self.held = held
        return held

    def release(self) -> None:
        with contextlib.suppress(redis.RedisError):  # else it lapses by itself
            self.client.eval(RELEASE, 1, self.key, self.token)
        self.held = False


class SingleBeatScheduler(PersistentScheduler):
    """Celery's file-backed scheduler, sending only while it holds the beat lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        seconds = settings.BEAT_LOCK_SECONDS
        self.lock = BeatLock(settings.REDIS_URL, seconds)
        self.renew_every = seconds / 3
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self.lock.hold():
            return self.renew_every  # standby: look again before the holder's lock lapses
        return min(super().tick(*args, **kwargs), self.renew_every)

    def close(self) -> None:
        self.lock.release()
        super().close()
