"""Channels' consumer loop, replaced for sockets that have no layer channel of their own.

The only module that relies on how Channels' consumers work inside. `AsyncConsumer.__call__`
sets `scope`, `channel_layer` and `base_send` on the consumer, then passes each message from
the server and from the consumer's layer channel to `dispatch`, which names the handler with
`get_handler_name` (`websocket.receive` -> `websocket_receive`) until a handler raises
`StopConsumer`. `LayerlessWebsocketConsumer` does the same for the server's messages only,
and relies on `AsyncWebsocketConsumer`'s handlers needing no more than that: `send`,
`accept` and `close` write through `base_send`; `websocket_connect` uses the layer only for
`groups` (empty here); `websocket_disconnect`, replaced here, calls `disconnect` and ends the
loop with `StopConsumer`; `websocket_receive` calls `receive(text_data=...)` or
`receive(bytes_data=...)`.

Checked against channels 4.3 (4.2 changed `dispatch`: it now closes old database connections
first). `check()` runs when the realtime app is ready.
"""

from __future__ import annotations

from typing import Any

import channels.consumer
import channels.exceptions
import channels.generic.websocket
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from realtime.kernel.dependency_checks import Reliance

RELIANCE = Reliance("channels", "socket loop (LayerlessWebsocketConsumer)", "4.3.x")


class LayerlessWebsocketConsumer(AsyncWebsocketConsumer):
    """Channels' WebSocket consumer, serving the server's messages only.

    `base_send` is the server's ASGI `send` (Channels' name for it), for writes that need
    nothing more.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve the socket's ASGI events one at a time, straight from the server.

        Layer events reach sockets through the hub (one layer channel per process), so a socket
        has no layer channel of its own, and Channels' loop has little to do here: it waits on
        its sources through a task and `asyncio.wait` per event (about 2.5 KB kept per idle
        socket), and runs Django's database clean-up in a worker thread before each one, on
        the path of every frame a client sends. Every handler that touches the database goes
        through `on_database_thread` (`database.py`), which does that clean-up around each call.
        """
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' handler without its trip to a worker thread to close old database
        connections (2.8% of a connect and close in py-spy): no socket code uses the database on
        the loop, and `on_database_thread` does that clean-up around each call that does.
        Channels' also leaves the consumer's `groups`, which are empty here."""
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


def check() -> None:
    """Raise `DependencyChanged` unless Channels' consumers still work as the loop expects."""
    consumer_module = "channels.consumer"
    handler_name = RELIANCE.attribute(channels.consumer, "get_handler_name", consumer_module)
    RELIANCE.parameters(handler_name, ("message",), f"{consumer_module}.get_handler_name")
    stop = RELIANCE.attribute(channels.exceptions, "StopConsumer", "channels.exceptions")
    if not (isinstance(stop, type) and issubclass(stop, Exception)):
        raise RELIANCE.changed("channels.exceptions.StopConsumer is no longer an exception")

    base = RELIANCE.attribute(channels.consumer, "AsyncConsumer", consumer_module)
    where = f"{consumer_module}.AsyncConsumer"
    # What Channels' own loop sets and stops on is what the replacement sets and stops on.
    loop = RELIANCE.attribute(base, "__call__", where)
    RELIANCE.uses(
        loop,
        ("scope", "channel_layer", "base_send", "dispatch", "StopConsumer"),
        f"{where}.__call__",
    )
    RELIANCE.uses(RELIANCE.attribute(base, "send", where), ("base_send",), f"{where}.send")

    websocket = RELIANCE.attribute(
        channels.generic.websocket, "AsyncWebsocketConsumer", "channels.generic.websocket"
    )
    where = "channels.generic.websocket.AsyncWebsocketConsumer"
    expected: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        # method: (its first parameters, names its code must still use)
        "websocket_connect": (("self", "message"), ("groups", "connect")),
        "websocket_receive": (("self", "message"), ("receive",)),
        "receive": (("self", "text_data", "bytes_data"), ()),
        "accept": (("self",), ("send",)),
        "close": (("self", "code", "reason"), ("send",)),
    }
    for name, (parameters, names) in expected.items():
        method = RELIANCE.attribute(websocket, name, where)
        RELIANCE.parameters(method, parameters, f"{where}.{name}")
        RELIANCE.uses(method, names, f"{where}.{name}")
