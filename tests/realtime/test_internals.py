"""The realtime app's reach into asgiref, Channels and asyncio internals, checked at start-up."""

from __future__ import annotations

import asyncio
import platform
import threading
from importlib.metadata import version
from types import ModuleType
from typing import Any

import channels.consumer
import channels.exceptions
import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from channels.consumer import AsyncConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from realtime.kernel import asgiref_internals
from realtime.kernel.dependency_checks import DependencyChanged
from realtime.sockets import asyncio_internals, channels_internals
from realtime.sockets.asyncio_internals import release_yielded_future
from realtime.sockets.channels_internals import LayerlessWebsocketConsumer
from tests.support.sources import modules_mentioning

CHECKED = [asgiref_internals, asyncio_internals, channels_internals]


@pytest.mark.parametrize("internals", CHECKED, ids=lambda module: module.__name__)
def test_each_check_passes_on_the_installed_versions(internals: ModuleType):
    internals.check()  # raises DependencyChanged otherwise


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("threadlocal", "realtime/kernel/asgiref_internals.py"),
        ("main_event_loop", "realtime/kernel/asgiref_internals.py"),
        ("_asyncio_future_blocking", "realtime/sockets/asyncio_internals.py"),
        ("get_handler_name", "realtime/sockets/channels_internals.py"),
        ("StopConsumer", "realtime/sockets/channels_internals.py"),
    ],
)
def test_a_private_name_is_used_only_in_its_dependencys_module(name: str, owner: str):
    assert modules_mentioning(name) == {owner}


# ---------------------------------------------------------------- asgiref


def test_the_asgiref_check_names_package_version_and_what_is_gone(monkeypatch):
    monkeypatch.delattr(SyncToAsync, "threadlocal")

    with pytest.raises(DependencyChanged) as raised:
        asgiref_internals.check()

    assert str(raised.value) == (
        f"asgiref {version('asgiref')}: asgiref.sync.SyncToAsync.threadlocal is gone;"
        " Switchboard's broadcast publisher (the loop of a sync_to_async call) needs it"
        " (checked against 3.13.x)"
    )


def test_the_asgiref_check_fails_when_the_thread_hand_off_stops_recording_the_loop(monkeypatch):
    def thread_handler(self: Any, loop: Any, exc_info: Any, func: Any, *args: Any) -> Any:
        self.threadlocal.loop = loop  # a rename the publisher would no longer find
        return func(*args)

    monkeypatch.setattr(SyncToAsync, "thread_handler", thread_handler)

    with pytest.raises(DependencyChanged, match="uses main_event_loop, main_event_loop_pid;"):
        asgiref_internals.check()


async def test_sync_code_called_from_a_loop_finds_that_loop():
    found = await sync_to_async(asgiref_internals.calling_loop)()

    assert found is asyncio.get_running_loop()


def test_sync_code_in_a_plain_thread_finds_no_loop():
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(asgiref_internals.calling_loop()))
    thread.start()
    thread.join()

    assert found == [None]


# ---------------------------------------------------------------- Channels


@pytest.mark.parametrize(
    ("owner", "name", "path"),
    [
        (channels.consumer, "get_handler_name", "channels.consumer.get_handler_name"),
        (channels.exceptions, "StopConsumer", "channels.exceptions.StopConsumer"),
        (AsyncConsumer, "send", "channels.consumer.AsyncConsumer.send"),
        (
            AsyncWebsocketConsumer,
            "websocket_receive",
            "channels.generic.websocket.AsyncWebsocketConsumer.websocket_receive",
        ),
    ],
)
def test_the_channels_check_names_package_version_and_what_is_gone(monkeypatch, owner, name, path):
    monkeypatch.delattr(owner, name)

    with pytest.raises(DependencyChanged) as raised:
        channels_internals.check()

    assert str(raised.value) == (
        f"channels {version('channels')}: {path} is gone; Switchboard's socket loop"
        " (LayerlessWebsocketConsumer) needs it (checked against 4.3.x)"
    )


def test_the_channels_check_fails_when_send_no_longer_goes_through_base_send(monkeypatch):
    async def send(self: Any, message: dict[str, Any]) -> None:
        await self.server_send(message)

    monkeypatch.setattr(AsyncConsumer, "send", send)

    with pytest.raises(DependencyChanged, match=r"AsyncConsumer\.send no longer uses base_send"):
        channels_internals.check()


def test_the_channels_check_fails_when_close_takes_other_parameters(monkeypatch):
    async def close(self: Any, code: int | None = None) -> None:
        await self.send({"type": "websocket.close"})

    monkeypatch.setattr(AsyncWebsocketConsumer, "close", close)

    with pytest.raises(DependencyChanged, match=r"close takes \(self, code\)"):
        channels_internals.check()


class Shout(LayerlessWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        await self.send(text_data=(text_data or "").upper())


@pytest.mark.django_db(transaction=True)  # Channels' disconnect handler closes old connections
async def test_the_layerless_loop_serves_a_socket_with_channels_own_handlers():
    # given: a client that opens the socket, sends a frame, then leaves
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in (
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hello"},
        {"type": "websocket.disconnect", "code": 1000},
    ):
        inbox.put_nowait(message)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # when
    await asyncio.wait_for(Shout.as_asgi()({"type": "websocket"}, inbox.get, send), 5)

    # then: Channels' handlers accepted and answered through the server's send, and the
    # disconnect ended the loop
    assert sent == [
        {"type": "websocket.accept", "subprotocol": None},
        {"type": "websocket.send", "text": "HELLO"},
    ]


# ---------------------------------------------------------------- asyncio


def test_the_asyncio_check_names_python_and_what_is_gone(monkeypatch):
    # CPython's Future type is immutable, so the check is shown a stand-in without the mark.
    monkeypatch.setattr(asyncio, "Future", type("Future", (), {}))

    with pytest.raises(DependencyChanged) as raised:
        asyncio_internals.check()

    assert str(raised.value) == (
        f"Python {platform.python_version()}: asyncio.Future._asyncio_future_blocking is gone;"
        " Switchboard's socket outbox (a send taken over by a Task) needs it"
        " (checked against 3.11)"
    )


async def _hand_driven_wait(*, release: bool) -> object:
    """Start a coroutine by hand up to its first wait, then let a Task await its future."""
    future = asyncio.get_running_loop().create_future()

    async def waits() -> object:
        return await future

    started = waits()
    yielded = started.send(None)
    assert yielded is future
    if release:
        release_yielded_future(yielded)

    async def take_over() -> object:
        return await yielded

    task = asyncio.ensure_future(take_over())
    await asyncio.sleep(0)
    future.set_result("sent")
    try:
        return await task
    finally:
        started.close()


async def test_a_yielded_future_once_released_is_awaited_by_a_task():
    assert await _hand_driven_wait(release=True) == "sent"


async def test_a_yielded_future_not_released_refuses_the_task():
    # Why the outbox releases it: the future still carries the mark of the first await.
    with pytest.raises(RuntimeError, match="await wasn't used with future"):
        await _hand_driven_wait(release=False)
