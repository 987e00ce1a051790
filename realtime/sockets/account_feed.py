"""A user's sockets in this process: closed when the session or token they were opened with
ends, and told of the user's rooms (read positions, `rooms:mine`)."""

from __future__ import annotations

import logging
from typing import Any, Protocol, Self

from realtime.kernel.names import ACCOUNT_REVOKED, ROOM_READ, ROOM_REMOVED, ROOM_STATE

from .feed import Feed

logger = logging.getLogger(__name__)


class AccountSocket(Protocol):
    """What an account's feed needs of a socket."""

    credential: str | None  # fingerprint of the session or token it was opened with

    def revoked(self) -> None: ...

    def room_read(self, event: dict[str, Any]) -> None: ...

    def room_state(self, event: dict[str, Any]) -> None: ...

    def room_removed(self, event: dict[str, Any]) -> None: ...


class AccountFeed(Feed[AccountSocket]):
    """A user's sockets in this process; closes those whose session or token has ended, and
    hands each the user's room events (read positions, room states)."""

    name = "account-feed"

    @classmethod
    async def open(cls, group: str, /) -> Self:
        """The feed of a user's account group."""
        return cls(group)

    async def handle(self, event: dict[str, Any]) -> None:
        method = self.ROOM_EVENTS.get(event.get("type"))
        if method is not None:
            for socket in list(self.subscriptions):
                try:
                    getattr(socket, method)(event)
                except Exception:
                    logger.exception("telling a socket of %s failed", event.get("type"))
            return
        if event.get("type") != ACCOUNT_REVOKED:
            return
        ended = set(event.get("credentials", ()))
        for socket in list(self.subscriptions):
            if socket.credential in ended:
                try:
                    socket.revoked()
                except Exception:
                    logger.exception("closing a signed-out socket failed")

    # Each room event, and the socket method it is handed to.
    ROOM_EVENTS: dict[object, str] = {
        ROOM_READ: "room_read",
        ROOM_STATE: "room_state",
        ROOM_REMOVED: "room_removed",
    }
