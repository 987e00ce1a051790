"""One beat sends at a time (`config/beat.py`): on a real Redis, and with two beat processes."""

from __future__ import annotations

import re
import signal
import sys
import time
import uuid

import pytest
from django.conf import settings

from config.beat import BeatLock
from tests.support.processes import Service, child_env, wait_until


@pytest.fixture
def key() -> str:
    return f"test:beat:{uuid.uuid4().hex}"


def test_a_second_beat_waits_until_the_first_lets_go(key):
    first = BeatLock(settings.REDIS_URL, 30, key)
    second = BeatLock(settings.REDIS_URL, 30, key)

    assert first.hold() is True
    assert second.hold() is False
    assert first.hold() is True  # renewed
    first.release()
    assert second.hold() is True
    assert first.hold() is False
    second.release()


def test_a_dead_beats_lock_lapses_and_another_takes_over(key):
    first = BeatLock(settings.REDIS_URL, 0.3, key)
    second = BeatLock(settings.REDIS_URL, 0.3, key)

    assert first.hold() is True  # and then it dies without releasing
    assert second.hold() is False
    time.sleep(0.5)
    assert second.hold() is True
    second.release()


def test_a_beat_that_cannot_reach_redis_does_not_send(key):
    lost = BeatLock("redis://127.0.0.1:9/0", 30, key)

    assert lost.hold() is False


def test_of_two_beat_processes_one_sends_and_the_other_takes_over_when_it_stops(tmp_path, log_dir):
    env = child_env(BEAT_LOCK_SECONDS="2")

    def beat(name: str) -> Service:
        argv = [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "warning"]
        argv += ["--schedule", str(tmp_path / f"{name}-schedule")]
        return Service(f"beat-{name}", argv, env, log_dir / f"beat-{name}.log").start()

    def states(service: Service) -> list[str]:
        return re.findall(r"beat \S+: (sending|on standby)", service.log())

    first = beat("first")
    wait_until(lambda: states(first) == ["sending"], timeout=30, interval=0.2)
    second = beat("second")
    try:
        time.sleep(3)  # longer than the lock's life: it was renewed, never lost
        assert states(first) == ["sending"]
        assert "sending" not in states(second)

        first.stop(signal.SIGTERM)
        wait_until(lambda: "sending" in states(second), timeout=10, interval=0.2)
    finally:
        first.stop()
        second.stop()
