"""The jobs app's reach into kombu's Redis transport, checked at start-up."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Producer, Queue
from kombu.transport import redis as kombu_redis

from jobs import kombu_internals
from realtime.kernel.dependency_checks import DependencyChanged
from tests.support.sources import modules_mentioning


def test_the_check_passes_on_the_installed_version():
    kombu_internals.check()  # raises DependencyChanged otherwise


def test_the_fix_is_installed_once_the_app_is_ready():
    installed = getattr(kombu_redis.Channel, "_connparams")  # noqa: B009 - not in the stubs

    assert installed.__code__.co_filename.endswith("jobs/kombu_internals.py")
    kombu_internals.install_redis_reconnect_fix()  # a second call changes nothing
    assert getattr(kombu_redis.Channel, "_connparams") is installed  # noqa: B009


def test_kombus_private_name_is_used_only_in_its_module():
    assert modules_mentioning("_connparams") == {"jobs/kombu_internals.py"}


def test_the_check_names_package_version_and_what_is_gone(monkeypatch):
    monkeypatch.delattr(kombu_redis.Channel, "_connparams")

    with pytest.raises(DependencyChanged) as raised:
        kombu_internals.check()

    assert str(raised.value) == (
        f"kombu {version('kombu')}: kombu.transport.redis.Channel._connparams is gone;"
        " Switchboard's worker-reconnect fix (jobs.kombu_internals) needs it"
        " (checked against 5.7.x)"
    )


def test_the_check_fails_when_the_settings_no_longer_come_from_the_connection(monkeypatch):
    def connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        return dict(self.transport_options)

    monkeypatch.setattr(kombu_redis.Channel, "_connparams", connparams)

    with pytest.raises(DependencyChanged, match="no longer uses connection, client;"):
        kombu_internals.check()


def test_the_check_fails_when_connparams_takes_other_parameters(monkeypatch):
    def connparams(self: Any, use_async: bool = False) -> Any:
        return self.connection.client

    monkeypatch.setattr(kombu_redis.Channel, "_connparams", connparams)

    with pytest.raises(DependencyChanged, match=r"takes \(self, use_async\)"):
        kombu_internals.check()


def test_the_check_fails_when_a_redis_connection_error_is_not_a_connection_error(monkeypatch):
    monkeypatch.setattr(kombu_redis.Transport, "connection_errors", (KeyError,))

    with pytest.raises(DependencyChanged, match="ConnectionError is not among"):
        kombu_internals.check()


@pytest.fixture
def held_message() -> Iterator[tuple[Connection, Any]]:
    """A channel on the test Redis holding one unacknowledged message; removed afterwards."""
    name = f"internals-{uuid.uuid4().hex[:8]}"
    connection = Connection(settings.REDIS_URL)
    channel = connection.channel()
    queue = Queue(name, Exchange(name), name, channel=channel)
    queue.declare()
    Producer(channel).publish({"n": 1}, exchange=name, routing_key=name)
    message = queue.get(no_ack=False)
    assert message is not None
    try:
        yield connection, channel
    finally:
        with Connection(settings.REDIS_URL) as cleaner:
            other: Any = cleaner.default_channel  # a Redis channel: its key names
            other.client.hdel(other.unacked_key, message.delivery_tag)
            other.client.zrem(other.unacked_index_key, message.delivery_tag)
            other.client.delete(name, other.keyprefix_queue % name)


@pytest.mark.redis_broker
def test_a_channel_closed_after_its_connection_was_let_go_raises_a_connection_error(
    held_message,
):
    # given: kombu has let the connection go (as Celery 5.7 does when the broker is lost)
    # while a channel still holds an unacknowledged message
    connection, channel = held_message
    connection.transport.client = None  # what kombu's Connection does when it lets go

    # when: the channel closes, putting the message back needs a new Redis connection;
    # then: that fails with a connection error the worker recovers from (kombu alone raises
    # AttributeError, and the worker exits)
    with pytest.raises(connection.connection_errors):
        channel.close()
