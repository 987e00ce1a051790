"""WebSocket routes: the gateway and the tutorial's page, found by the handshake gate."""

from __future__ import annotations

import re
from typing import Any

from .gateway import GatewayConsumer
from .tutorial import TutorialChatConsumer

ROUTES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"^/ws/$"), GatewayConsumer.as_asgi()),
    # The tutorial's route admitted `\w+`; any name reaches the consumer, which validates it.
    (re.compile(r"^/ws/chat/(?P<room_name>[^/]+)/$"), TutorialChatConsumer.as_asgi()),
]


def websocket_route(path: str) -> tuple[Any, dict[str, str]] | None:
    """The consumer of a socket's path and the path's keyword arguments; None: no route."""
    for pattern, consumer in ROUTES:
        match = pattern.match(path)
        if match is not None:
            return consumer, match.groupdict()
    return None
