"""One socket's interest in one channel, and the text of a chat message in a socket's format."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from realtime.kernel import events

logger = logging.getLogger(__name__)

# The formats a socket speaks: the gateway's frames, or the tutorial's `{"message": ...}`.
GATEWAY = "gateway"
TUTORIAL = "tutorial"

Push = Callable[[str], None]


def encode(fmt: str, frame: dict[str, Any]) -> str | None:
    """The text of a frame of the room's sequence in a socket's format; None when that format
    has nothing to show for it (the tutorial's shows messages only: not their edits,
    deletions or tombstones)."""
    if fmt == TUTORIAL:
        if frame["type"] != "chat.message" or frame["deleted"]:
            return None
        return json.dumps({"message": frame["body"]})
    return json.dumps(frame)


class Subscription:
    """One socket's interest in one room or job; holds live frames back until its replay is sent.

    `push` hands a frame to the socket's outbox and never waits, so feeds deliver to all
    their sockets in one synchronous pass.
    """

    __slots__ = (
        "__weakref__",  # a share link's expiry timer holds it weakly
        "conn_id",
        "end_reason",
        "ended",
        "fmt",
        "last_seq",
        "log_after",
        "output_after",
        "output_pending",
        "pending",
        "push",
        "share_id",
        "user",
    )

    def __init__(self, push: Push, fmt: str, conn_id: str, user: events.UserRef | None) -> None:
        self.push = push
        self.fmt = fmt
        self.conn_id = conn_id
        self.user = user
        self.last_seq = 0
        self.log_after = 0  # job log lines up to this number are already known to the client
        self.output_after = 0  # job output chunks up to this `seq` were sent
        self.output_pending: list[dict[str, Any]] = []  # output frames that came before live
        self.share_id: int | None = None  # a job followed through this share link
        self.pending: list[tuple[int | None, str | None]] | None = []
        # Called (with why) when its user may no longer read the room: the feed has let go.
        self.ended: Callable[[str], None] | None = None
        self.end_reason: str | None = None  # ended before it went live: its socket finishes it

    def deliver(self, seq: int | None, text: str | None) -> None:
        """Send a frame (`seq` None: not of the room's sequence, e.g. presence) unless already
        sent; no text: only count its `seq` as sent (the socket's format does not show it)."""
        if self.pending is not None:
            self.pending.append((seq, text))
        elif seq is None:
            if text is not None:
                self.push(text)
        elif seq > self.last_seq:
            self.last_seq = seq
            if text is not None:
                self.push(text)

    def end(self, reason: str) -> None:
        """Its user may no longer read the room: tell its socket (the feed dropped it)."""
        if self.ended is not None:
            self.ended(reason)

    def go_live(self, last_seq: int) -> None:
        """After the replay up to `last_seq`: send what arrived meanwhile, then stream."""
        self.last_seq = last_seq
        pending, self.pending = self.pending or [], None
        for seq, text in pending:
            self.deliver(seq, text)
        output, self.output_pending = self.output_pending, []
        for frame in output:
            self.deliver_output(frame)

    def deliver_output(self, frame: dict[str, Any]) -> None:
        """Send the chunks of a `job.output` frame that the client does not have yet; before
        the subscription is live, keep the frame for `go_live`."""
        if self.pending is not None:
            self.output_pending.append(frame)
            return
        fresh = [chunk for chunk in frame["chunks"] if chunk["seq"] > self.output_after]
        if fresh:
            self.output_after = fresh[-1]["seq"]
            self.push(json.dumps({**frame, "chunks": fresh}))


def deliver(subscription: Subscription, seq: int | None, text: str | None) -> None:
    """`subscription.deliver`, for a feed going through its sockets: a failure stops no other."""
    try:
        subscription.deliver(seq, text)
    except Exception:  # a socket that went away must not stop the others
        logger.debug("delivery to %s failed", subscription.conn_id, exc_info=True)
