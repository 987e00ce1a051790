"""A user's sockets in this process, closed when the session or token they were opened with ends."""

from __future__ import annotations

import logging
from typing import Any, Protocol, Self

from realtime.kernel.names import ACCOUNT_REVOKED

from .feed import Feed

logger = logging.getLogger(__name__)


class AccountSocket(Protocol):
    """What an account's feed needs of a socket."""

    credential: str | None  # fingerprint of the session or token it was opened with

    def revoked(self) -> None: ...


class AccountFeed(Feed[AccountSocket]):
    """A user's sockets in this process; closes those whose session or token has ended."""

    name = "account-feed"

    @classmethod
    async def open(cls, group: str, /) -> Self:
        """The feed of a user's account group."""
        return cls(group)

    async def handle(self, event: dict[str, Any]) -> None:
        if event.get("type") != ACCOUNT_REVOKED:
            return
        ended = set(event.get("credentials", ()))
        for socket in list(self.subscriptions):
            if socket.credential in ended:
                try:
                    socket.revoked()
                except Exception:
                    logger.exception("closing a signed-out socket failed")
