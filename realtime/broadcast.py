"""The one bridge from ordinary (sync) code to the channel layer; sends only after commit.

Imports no domain code. The channel layer is at-most-once: every event carries a `seq`, so
a receiver that notices a gap fetches what it missed from the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0


def room_group(slug: str) -> str:
    """Channel-layer group of a room (slugs are limited to characters groups accept)."""
    return f"room.{slug}"


def publish_on_commit(group: str, event: dict[str, Any]) -> None:
    """Send `event` to `group` once the current transaction commits (at once outside one)."""
    # The group travels with the event: a process that is in several groups (a job's and its
    # owner's) receives it once per group and must know which feed it is for.
    tagged = {**event, "group": group}
    transaction.on_commit(lambda: publish_now(group, tagged), robust=True)


def publish_now(group: str, event: dict[str, Any]) -> None:
    """Send `event` to `group` from sync code; a failure is logged, never raised to the caller.

    The write it announces is already committed, and receivers repair gaps from the database.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, event), _loop())
        future.result(PUBLISH_TIMEOUT)
    except Exception:
        logger.exception("broadcast to %s failed", group)


_state: dict[str, Any] = {}
_state_lock = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """This process's publishing loop, in a thread of its own, made on first use.

    `async_to_sync` in a thread with no event loop (a Celery worker) would build a loop and
    a Redis connection per call; one long-lived loop keeps one connection pool instead.
    """
    with _state_lock:
        if _state.get("pid") != os.getpid():  # none yet, or inherited across a fork
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="broadcast", daemon=True).start()
            _state.update(pid=os.getpid(), loop=loop)
        loop = _state["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        return loop
