"""Sync reads on a thread's own Redis connection (`realtime.kernel.redis_pool.thread_commands`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings
from redis import Redis
from redis.exceptions import RedisError

from config.redis_server import PrivateRedis, free_port
from realtime.kernel.redis_pool import thread_commands


@pytest.fixture
def private(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis").start()
    yield redis
    redis.stop()


def test_several_commands_answer_in_order(private: PrivateRedis) -> None:
    with override_settings(REDIS_URL=private.url):
        Redis.from_url(private.url).set("a", "1")
        assert thread_commands([("GET", "a"), ("GET", "b"), ("PING",)]) == [b"1", None, b"PONG"]


def test_a_connection_the_server_dropped_is_made_again(private: PrivateRedis) -> None:
    # given: this thread's connection, in use
    with override_settings(REDIS_URL=private.url):
        assert thread_commands([("CLIENT", "SETNAME", "mine")]) == [b"OK"]
        admin = Redis.from_url(private.url)

        # when: the server drops it (as a restart would)
        admin.client_kill_filter(skipme=True, _type="normal")

        # then: the next read makes a new one and answers
        assert thread_commands([("PING",)]) == [b"PONG"]


def test_no_redis_is_an_error_and_then_it_comes_back(private: PrivateRedis) -> None:
    # given: a URL where nothing answers
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    # then: an error the caller can catch (REST reads go on without presence)
    with override_settings(REDIS_URL=nowhere), pytest.raises(RedisError):
        thread_commands([("PING",)])
    # and the thread's connection to a Redis that answers still works
    with override_settings(REDIS_URL=private.url):
        assert thread_commands([("PING",)]) == [b"PONG"]
