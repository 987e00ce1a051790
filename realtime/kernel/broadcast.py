"""The one bridge from ordinary (sync) code to the channel layer; sends only after commit.

Imports no domain code. The channel layer is at-most-once: every event carries a `seq`, so
a receiver that notices a gap fetches what it missed from the database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

from . import metrics
from .asgiref_internals import calling_loop
from .pubsub_wire import PubSubWire

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0


def publish_on_commit(group: str, event: dict[str, Any]) -> None:
    """Send `event` to `group` once the current transaction commits (at once outside one)."""
    # The group travels with the event: a process that is in several groups (a job's and its
    # owner's) receives it once per group and must know which feed it is for.
    tagged = {**event, "group": group}
    transaction.on_commit(lambda: publish_now(group, tagged), robust=True)


def publish_now(group: str, event: dict[str, Any]) -> None:
    """Send `event` to `group` from sync code; a failure is logged, never raised to the caller.

    The write it announces is already committed, and receivers repair gaps from the database.
    Sync code called from an event loop (a socket's database call, an ASGI request's view) has
    that loop send it, after every event committed before it, and goes on at once: the
    database thread, which every socket of the process queues for, never waits on Redis.
    Elsewhere (a Celery worker, a management command) the call returns once it is sent.

    Events of one stream sent by two processes (a job's update by the API, its next by the
    worker) may arrive in either order: they carry the stream's `seq`, and receivers drop one
    older than what they have, which an update carrying the whole state (a job's) supersedes.
    """
    event = {**event, "at": time.time()}  # committed now: the fan-out lag counts from here
    held: list[tuple[str, dict[str, Any]]] | None = getattr(_holding, "events", None)
    if held is not None:
        held.append((group, event))
        return
    layer = get_channel_layer()
    if layer is None:
        return
    loop = calling_loop()
    if loop is not None:
        try:
            loop.call_soon_threadsafe(_publisher(loop).put, layer, group, event)
            return
        except RuntimeError:  # that loop has closed: send it from here after all
            pass
    # Through the publishing loop's queue, after what this process queued there before (a
    # worker's output writer's frames, `publish_soon`), and waited for: a job's final state
    # never overtakes its last output on the way to the layer.
    sent: concurrent.futures.Future[None] = concurrent.futures.Future()
    try:
        publishing = _loop()
        publishing.call_soon_threadsafe(_publisher(publishing).put, layer, group, event, sent)
        sent.result(2 * PUBLISH_TIMEOUT)  # each send ahead of it gives up after PUBLISH_TIMEOUT
    except Exception:
        logger.exception("broadcast to %s failed", group)


def publish_transient(group: str, event: dict[str, Any]) -> None:
    """Send `event`, which announces nothing stored (someone typing), to `group` at once.

    There is no commit to wait for, and nothing to repair: lost on the way, it is lost, and
    its receivers forget it soon anyway. On an event loop's own thread (a socket's handler)
    that loop's publisher sends it, after what the loop published before, and the call
    returns at once; elsewhere as `publish_now`.
    """
    tagged = {**event, "group": group}
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        publish_now(group, tagged)
        return
    publish_from_loop([(group, tagged)])


_holding = threading.local()


@contextlib.contextmanager
def held() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Keep what this thread commits meanwhile, (group, event) each, instead of sending it.

    For a thread that an event loop hands work to and waits for anyway: the loop sends the
    events itself (`publish_from_loop`) when the work comes back, rather than being woken
    once more for them.
    """
    events: list[tuple[str, dict[str, Any]]] = []
    _holding.events = events
    try:
        yield events
    finally:
        _holding.events = None


def publish_from_loop(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Send events that `held` kept, in order, from the running event loop; returns at once."""
    layer = get_channel_layer()
    if layer is None or not events:
        return
    publisher = _publisher(asyncio.get_running_loop())
    for group, event in events:
        publisher.put(layer, group, event)


def publish_soon(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Send events that `held` kept, in order, from this process's publishing loop, and return
    at once: for a thread with no loop of its own that commits often (a worker's output
    writer), which `publish_now` would make wait for one round trip per event. Batched and
    pipelined as a loop's own events are."""
    layer = get_channel_layer()
    if layer is None or not events:
        return
    loop = _loop()

    def put_all() -> None:
        publisher = _publisher(loop)
        for group, event in events:
            publisher.put(layer, group, event)

    loop.call_soon_threadsafe(put_all)


# Events a loop may hold while Redis is slow or away. Past that the oldest are dropped: each
# announced a committed write, and receivers fetch what they missed from the database.
MAX_PENDING = 10_000


class _Publisher:
    """One event loop's outgoing events, sent one at a time in the order they were committed."""

    def __init__(self) -> None:
        # (layer, group, event, a future set once it was sent or given up on, or None)
        self.queue: deque[tuple[Any, str, dict[str, Any], Sent | None]] = deque(maxlen=MAX_PENDING)
        self.task: asyncio.Task[None] | None = None
        self.dropping = False
        # A layer's own PUBLISH connection (`pubsub_wire`), or None: its group_send.
        self.wires: weakref.WeakKeyDictionary[Any, PubSubWire | None] = weakref.WeakKeyDictionary()

    def put(self, layer: Any, group: str, event: dict[str, Any], sent: Sent | None = None) -> None:
        if len(self.queue) == MAX_PENDING:
            if not self.dropping:
                self.dropping = True  # once per backlog, not once per event while Redis is away
                logger.warning("broadcast backlog full; dropping the oldest events")
            _settle(self.queue[0][3])
        self.queue.append((layer, group, event, sent))
        if self.task is None:
            self.task = asyncio.ensure_future(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self.queue:
                by_layer: dict[int, tuple[Any, list[tuple[str, dict[str, Any]]]]] = {}
                batches, waiting = self._take_batches()
                for layer, group, event in batches:
                    by_layer.setdefault(id(layer), (layer, []))[1].append((group, event))
                try:
                    for layer, messages in by_layer.values():
                        await self._send(layer, messages)
                finally:
                    for sent in waiting:
                        _settle(sent)
        finally:
            self.task = None
            self.dropping = False

    async def _send(self, layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
        if layer not in self.wires:
            self.wires[layer] = PubSubWire.for_layer(layer)
        wire = self.wires[layer]
        if wire is not None:
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    await wire.publish(messages)
            except Exception:
                groups = ", ".join(sorted({group for group, _ in messages}))
                metrics.REDIS_ERRORS.inc()
                logger.exception("broadcast to %s failed", groups)
            return
        for group, event in messages:
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    await layer.group_send(group, event)
            except Exception:
                metrics.REDIS_ERRORS.inc()
                logger.exception("broadcast to %s failed", group)

    def _take_batches(self) -> tuple[list[tuple[Any, str, dict[str, Any]]], list[Sent]]:
        """Everything waiting, one send per group: a group's events in order, in one batch
        when there are several (a batch of posts commits several messages of one room); and
        the futures of those whose senders wait."""
        by_group: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
        waiting: list[Sent] = []
        while self.queue and len(by_group) < MAX_GROUPS_PER_ROUND:
            layer, group, event, sent = self.queue.popleft()
            if sent is not None:
                waiting.append(sent)
            events = by_group.setdefault(group, (layer, []))[1]
            events.append(event)
            if len(events) == MAX_BATCH:
                break
        batches = [
            (layer, group, events[0] if len(events) == 1 else batch(group, events))
            for group, (layer, events) in by_group.items()
        ]
        return batches, waiting


Sent = concurrent.futures.Future[None]


def _settle(sent: Sent | None) -> None:
    """Let a sender waiting in `publish_now` go on: its event was sent, or given up on (logged)."""
    if sent is not None and not sent.done():
        sent.set_result(None)


# Events of one group sent as one at most, and groups gathered before sending.
MAX_BATCH = 100
MAX_GROUPS_PER_ROUND = 100
BATCH = "broadcast.batch"


def batch(group: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Several events of one group, in order, as one channel-layer message."""
    return {"type": BATCH, "group": group, "events": events}


def unbatched(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The events a received channel-layer message carries, in order."""
    if event.get("type") == BATCH:
        events: list[dict[str, Any]] = event["events"]
        return events
    return [event]


_publishers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Publisher] = (
    weakref.WeakKeyDictionary()
)


def _publisher(loop: asyncio.AbstractEventLoop) -> _Publisher:
    with _state_lock:
        publisher = _publishers.get(loop)
        if publisher is None:
            publisher = _publishers[loop] = _Publisher()
        return publisher


_state: dict[str, Any] = {}
_state_lock = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """This process's publishing loop, in a thread of its own, made on first use.

    `async_to_sync` in a thread with no event loop (a Celery worker) would build a loop and
    a Redis connection per call; one long-lived loop keeps one connection pool instead. The
    RabbitMQ layer, which can only be made inside a running loop and then belongs to it, has
    its connection for sync code on this loop too, made once and reused by every call.
    """
    with _state_lock:
        if _state.get("pid") != os.getpid():  # none yet, or inherited across a fork
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="broadcast", daemon=True).start()
            _state.update(pid=os.getpid(), loop=loop)
        loop = _state["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        return loop
