"""Socket benchmark: fan-out, many rooms, the post path and connections, against a ceiling.

Run `.venv/bin/python -m bench.fanout --quick` (see bench/README.md). The script starts its
own Redis, database (SQLite, or a fresh PostgreSQL database) and servers on loopback, pins
them to core 0 and itself (the load generator) to core 1, runs each scenario against the
`websockets` ceiling and each server, prints one row per run, the server/ceiling ratios and
the targets, and stops every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.protocol import State

from bench.probe import MACHINE_QUIET, CpuProbe, Usage, machine_quiet, process_idle, rss_bytes
from bench.report import counts, fmt, percent, percentile, print_logs, ratio, table, verdict
from bench.stack import (
    CEILING,
    LOADGEN_CORE,
    POSTGRES_URL,
    SERVER_CORE,
    START_LIMIT,
    UVICORN_WS,
    DatabaseUnavailable,
    Environment,
    LogReport,
    Server,
    can_pin,
    from_args,
    keep_or_remove,
    log,
    parse_databases,
    parse_layers,
    parse_servers,
    rabbitmq_ps,
    raise_fd_limit,
    redis_ps,
    scan_log,
    server_command,
    server_cores,
    stop_on_signals,
)
from bench.ws import ws_connect
from config.redis_server import free_port

ROOM = "lobby"
# The post path's room: nobody but the scenario's own subscribers is ever in it.
POST_ROOM = "bench-post"
# Receivers open their sockets this many at a time, except in the idle and storm scenarios,
# whose point is that they all arrive at once, and in `connect N by B`, which says its own.
CONNECT_CONCURRENCY = 50
# The sender's sequence numbers are per sender; a key packs (sender, index) into one int.
KEY_BASE = 1_000_000
# How long the window waits for the probe before it gives a slot up: a message the server
# dropped without a word (its rate limiter does that) must not stall the sender forever.
WINDOW_TIMEOUT = 2.0
WINDOW = 16  # messages in flight when the fan-out is paced by the window
# psutil's CPU times tick at 10 ms; over a shorter phase the CPU columns are rough.
PRECISE_PHASE = 1.0
# Idle means idle (joins announced, buffers flushed): after connecting, wait (up to
# QUIET_LIMIT s) until the server uses under 5% of a core before reading RSS or sending.
QUIET_LIMIT = 60.0
# The per-socket frame limit of the Django servers, unless --ws-rate / --ws-burst say
# otherwise: high enough to measure the fan-out and the post path, not the limiter.
WS_LIMIT_LIFTED = 10_000.0

MESSAGE_KINDS = ("fanout", "rooms", "burst", "post")
SOCKET_KINDS = ("idle", "connect", "storm")
KINDS = MESSAGE_KINDS + SOCKET_KINDS


def room_slugs(count: int) -> list[str]:
    """The rooms of the many-rooms scenario: bench-00, bench-01, ..."""
    return [f"bench-{i:02d}" for i in range(count)]


# ------------------------------------------------------------------ scenarios and results
@dataclass(frozen=True)
class Scenario:
    """One row of the table: what to run, with which sizes."""

    kind: str  # one of KINDS
    clients: int  # receivers (per room for `rooms`, subscribers for `post`) or sockets
    messages: int = 0  # per sender
    rate: float = 0.0  # per sender, msgs/s; 0 = paced by the window
    window: int = WINDOW
    senders: int = 1
    rooms: int = 1
    batch: int = 0  # `connect`: handshakes in flight at most

    @property
    def label(self) -> str:
        """The scenario column, e.g. `fanout 200 x500 window 16`."""
        if self.kind in ("idle", "storm"):
            return f"{self.kind} {self.clients}"
        if self.kind == "connect":
            return f"connect {self.clients} by {self.batch}"
        if self.kind == "burst":
            return f"burst {self.senders}x{self.messages}->{self.clients}"
        if self.kind == "post":
            return f"post {self.messages} -> {self.clients} subs"
        if self.kind == "rooms":
            return (
                f"rooms {self.rooms}x{self.clients}, {self.senders} senders"
                f" x{self.messages} at {self.rate:g}/s"
            )
        pace = f"{self.rate:g}/s" if self.rate else f"window {self.window}"
        return f"fanout {self.clients} x{self.messages} {pace}"

    @property
    def receivers(self) -> int:
        """Subscribed sockets in all: what the run opens besides its senders."""
        return self.clients * self.rooms


@dataclass
class Row:
    """What one scenario measured on one server and database."""

    server: str
    db: str
    scenario: Scenario
    layer: str = "-"  # the channel layer (pubsub, core, rabbitmq); "-" for the ceiling
    connected: int = 0  # in (and, for the socket scenarios, still open after --settle)
    attempted: int = 0
    joined: int = 0  # got in: hello, then subscribed
    dropped: int = 0  # socket scenarios: got in, then closed by the server before the end
    sent: int = 0
    acked: int = 0
    rejected: int = 0
    unanswered: int = 0
    delivered: int = 0
    expected: int = 0
    lost: int = 0
    lost_receivers: int = 0
    duplicates: int = 0
    reordered: int = 0
    latencies_ns: list[int] = field(default_factory=list)  # send -> delivery
    ack_ns: list[int] = field(default_factory=list)  # chat.send -> chat.sent
    hello_ns: list[int] = field(default_factory=list)  # connect -> hello
    subscribed_ns: list[int] = field(default_factory=list)  # connect -> subscribed
    usage: Usage | None = None  # CPU over the measured phase
    rss_per_conn: float | None = None
    setup_s: float | None = None
    window_stalls: int = 0
    cut_short: bool = False
    errors: Counter[str] = field(default_factory=Counter)
    failure: str = ""

    @property
    def kind(self) -> str:
        """The scenario's kind."""
        return self.scenario.kind

    @property
    def op(self) -> str:
        """What the CPU columns are divided by: deliveries, acked posts or connections."""
        if self.kind == "post":
            return "send"
        return "conn" if self.kind in SOCKET_KINDS else "dlv"

    @property
    def ops(self) -> int:
        """How many of `op` the run did."""
        if self.kind == "post":
            return self.acked
        return self.joined if self.kind in SOCKET_KINDS else self.delivered

    def latencies(self) -> list[int]:
        """The latencies the p50/p99 columns read: delivery, chat.sent, or hello."""
        if self.kind == "post":
            return self.ack_ns
        return self.hello_ns if self.kind in SOCKET_KINDS else self.latencies_ns

    def percentile_ms(self, fraction: float, values: list[int] | None = None) -> float | None:
        """The latency (ms) that `fraction` of `values` (default: `latencies()`) did not exceed."""
        value = percentile(self.latencies() if values is None else values, fraction)
        return None if value is None else value / 1e6

    def cpu(self, name: str) -> float | None:
        """CPU seconds of `server`, its `redis` or its `rabbitmq` over the measured phase, if
        measured."""
        return None if self.usage is None else self.usage.cpu.get(name)

    def per_op(self, name: str) -> float | None:
        """The CPU seconds of `server`, `redis` or `rabbitmq` divided by `ops`."""
        seconds = self.cpu(name)
        if seconds is None or not self.ops:
            return None
        return seconds / self.ops


# ------------------------------------------------------------------ the load generator
@dataclass
class Tally:
    """Deliveries of one run, shared by its receivers (one asyncio loop: no locks)."""

    tag: str
    delivered: int = 0
    duplicates: int = 0
    reordered: int = 0
    presence_frames: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


class Receiver:
    """One socket subscribed to a room that records every `chat.message` of this run it gets."""

    def __init__(
        self, tally: Tally, room: str = ROOM, on_message: Callable[[int], None] | None = None
    ) -> None:
        self.tally = tally
        self.room = room
        self.channel = f"room:{room}"
        self.on_message = on_message
        self.ws: ClientConnection | None = None
        self.seen: set[int] = set()
        self.last_seq = 0
        self.hello_ns: int | None = None  # from starting to connect
        self.subscribed_ns: int | None = None

    async def open(self, url: str, open_timeout: float) -> bool:
        """Connect, read `hello`, subscribe and wait for `subscribed`; False on any failure.

        A failure counts as `connect:<error>` up to `hello`, as `subscribe:<error>` after it.
        """
        started = time.perf_counter_ns()
        stage = "connect"
        try:
            async with asyncio.timeout(open_timeout):
                self.ws = await ws_connect(url, open_timeout)
                hello = json.loads(await self.ws.recv())
                if hello.get("type") != "hello":
                    self.tally.errors[f"greeting:{hello.get('type')}"] += 1
                    return False
                self.hello_ns = time.perf_counter_ns() - started
                stage = "subscribe"
                await self.ws.send(
                    json.dumps({"type": "subscribe", "channel": self.channel, "ref": 1})
                )
                while True:
                    frame = json.loads(await self.ws.recv())
                    kind = frame.get("type")
                    if kind == "subscribed" and frame.get("ref") == 1:
                        self.subscribed_ns = time.perf_counter_ns() - started
                        return True
                    if kind == "error":
                        self.tally.errors[f"subscribe:{frame.get('code')}"] += 1
                        return False
                    # Presence and anything else a newer server sends before the reply.
        except (TimeoutError, OSError, WebSocketException, ValueError) as error:
            self.tally.errors[f"{stage}:{type(error).__name__}"] += 1
            return False

    async def listen(self) -> None:
        """Read frames until the socket closes or the task is cancelled."""
        assert self.ws is not None
        tally, tag = self.tally, self.tally.tag
        with contextlib.suppress(ConnectionClosed):
            async for data in self.ws:
                now = time.perf_counter_ns()
                raw = data if isinstance(data, str) else data.decode(errors="replace")
                # Presence frames can outnumber messages (one per join, to everyone): skip
                # them without parsing, so the load generator's CPU goes to the measurement.
                if "chat.message" not in raw:
                    if '"presence"' in raw:
                        tally.presence_frames += 1
                    elif '"error"' in raw:
                        tally.errors[f"receiver:{json.loads(raw).get('code')}"] += 1
                    continue
                frame = json.loads(raw)
                if frame.get("type") != "chat.message":
                    continue
                parts = str(frame.get("body", "")).split("|", 4)
                if len(parts) < 4 or parts[0] != tag:
                    continue  # warm-up or history of an earlier run
                if frame.get("channel") != self.channel:
                    tally.errors["wrong_room"] += 1
                    continue
                sender, index, sent_ns = int(parts[1]), int(parts[2]), int(parts[3])
                key = sender * KEY_BASE + index
                if key in self.seen:
                    tally.duplicates += 1
                    continue
                self.seen.add(key)
                seq = frame.get("seq")
                if isinstance(seq, int):
                    if seq < self.last_seq:
                        tally.reordered += 1
                    self.last_seq = seq
                tally.delivered += 1
                tally.latencies_ns.append(now - sent_ns)
                if self.on_message is not None and sender == 0:
                    self.on_message(index)

    @property
    def open_now(self) -> bool:
        """True while the socket is open (the server has not closed it)."""
        return self.ws is not None and self.ws.state is State.OPEN

    async def close(self) -> None:
        """Close the socket (closing handshake, at most 2 s)."""
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()


class Window:
    """At most `size` messages sent but not yet seen by the probe receiver (or refused)."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self.inflight: dict[int, None] = {}
        self.changed = asyncio.Event()
        self.stalls = 0

    async def acquire(self, index: int) -> None:
        """Wait for a free slot, then hold it for message `index`."""
        while len(self.inflight) >= self.size:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), self.timeout)
            except TimeoutError:
                # The probe missed a message: count it and free its slot, so a loss cannot
                # stall the run.
                self.stalls += 1
                self.inflight.pop(next(iter(self.inflight)))
        self.inflight[index] = None

    def release(self, index: int) -> None:
        """Message `index` reached the probe (or was refused): its slot is free."""
        if index in self.inflight:
            del self.inflight[index]
            self.changed.set()


# How long a sender waits after a `rate_limited` refusal: past the server's one-second
# streak, so that a paced sender is never taken for a flood.
RATE_LIMIT_PAUSE = 1.1


class Sender:
    """A socket (not subscribed) that posts into a room and collects acks and refusals."""

    def __init__(self, index: int, tally: Tally, body_size: int, room: str = ROOM) -> None:
        self.index = index
        self.tally = tally
        self.body_size = body_size
        self.room = room
        self.ws: ClientConnection | None = None
        self.sent = 0
        self.acked: set[int] = set()
        self.refused: dict[int, str] = {}
        self.on_refused: Callable[[int], None] | None = None
        self.paused_until = 0.0  # after a rate_limited refusal (monotonic time)
        self.closed = False
        self.sent_ns: dict[int, int] = {}  # ref -> when it was sent, until answered
        self.ack_ns: list[int] = []  # chat.send -> chat.sent
        self.waiting: dict[int, asyncio.Future[None]] = {}

    async def open(self, url: str, open_timeout: float) -> bool:
        """Connect and read `hello`; False on any failure."""
        try:
            async with asyncio.timeout(open_timeout):
                self.ws = await ws_connect(url, open_timeout)
                hello = json.loads(await self.ws.recv())
                return bool(hello.get("type") == "hello")
        except (TimeoutError, OSError, WebSocketException, ValueError) as error:
            self.tally.errors[f"connect:{type(error).__name__}"] += 1
            return False

    async def post(self, index: int) -> None:
        """Send message `index`; its body carries the send time for the receivers.

        After a `rate_limited` refusal the sender pauses, as a client honouring the limit
        does: the server closes a socket that sends on through 100 refusals (4429).
        """
        assert self.ws is not None
        if self.closed:
            return
        pause = self.paused_until - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        now = time.perf_counter_ns()
        head = f"{self.tally.tag}|{self.index}|{index}|{now}|"
        body = head + "x" * max(0, self.body_size - len(head))
        frame = {
            "type": "chat.send",
            "room": self.room,
            "body": body,
            "client_id": str(uuid.uuid4()),
            "ref": index,
        }
        self.sent_ns[index] = now
        try:
            await self.ws.send(json.dumps(frame))
        except ConnectionClosed as closed:
            self.closed = True
            code = closed.rcvd.code if closed.rcvd is not None else "none"
            self.tally.errors[f"sender:closed:{code}"] += 1
            return
        self.sent += 1

    async def post_and_wait(self, index: int, patience: float) -> bool:
        """Send message `index` and wait for its `chat.sent` or `error`; False if neither came."""
        answered = self.waiting[index] = asyncio.get_running_loop().create_future()
        try:
            await self.post(index)
            if self.closed:
                return False
            await asyncio.wait_for(answered, patience)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting.pop(index, None)

    async def listen(self) -> None:
        """Record `chat.sent` acks and `error` refusals (by code) until the socket closes."""
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                now = time.perf_counter_ns()
                frame = json.loads(raw)
                kind, ref = frame.get("type"), frame.get("ref")
                if kind == "chat.sent" and isinstance(ref, int):
                    self.acked.add(ref)
                    sent = self.sent_ns.pop(ref, None)
                    if sent is not None:
                        self.ack_ns.append(now - sent)
                elif kind == "error":
                    code = str(frame.get("code"))
                    self.tally.errors[f"sender:{code}"] += 1
                    if code == "rate_limited":
                        self.paused_until = time.monotonic() + RATE_LIMIT_PAUSE
                    if isinstance(ref, int):
                        self.refused[ref] = code
                        self.sent_ns.pop(ref, None)
                        if self.on_refused is not None:
                            self.on_refused(ref)
                else:
                    continue
                waiter = self.waiting.get(ref) if isinstance(ref, int) else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def acked_keys(self) -> set[int]:
        """The keys (sender, index) of the messages the server acked."""
        return {self.index * KEY_BASE + i for i in self.acked}

    async def close(self) -> None:
        """Close the socket (closing handshake, at most 2 s)."""
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()


Peer = Receiver | Sender


@dataclass
class Options:
    """Knobs shared by every scenario."""

    body_size: int
    connect_timeout: float
    drain_timeout: float
    settle: float
    phase_seconds: float
    quiet_wait: float
    uvicorn_ws: str


async def open_all(
    receivers: list[Receiver], url: str, open_timeout: float, concurrency: int | None
) -> list[Receiver]:
    """Open the sockets (at most `concurrency` handshakes at a time); the ones that got in."""
    gate = asyncio.Semaphore(concurrency or len(receivers) or 1)

    async def one(receiver: Receiver) -> bool:
        async with gate:
            return await receiver.open(url, open_timeout)

    results = await asyncio.gather(*(one(r) for r in receivers))
    return [r for r, ok in zip(receivers, results, strict=True) if ok]


async def close_all(peers: Sequence[Receiver | Sender]) -> None:
    """Close every socket concurrently."""
    await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


async def drain(
    tally: Tally, senders: list[Sender], receivers: list[Receiver], quiet: float
) -> None:
    """Wait until every sent message is answered and every acked one reached its room.

    Gives up when nothing arrived for `quiet` seconds (a message or an answer is missing).
    """
    audience = Counter(r.room for r in receivers)
    last_progress, last_seen = time.monotonic(), -1
    hard_stop = time.monotonic() + max(quiet * 6, 60.0)
    while time.monotonic() < hard_stop:
        expected = sum(len(s.acked) * audience[s.room] for s in senders)
        answered = all(len(s.acked) + len(s.refused) >= s.sent for s in senders)
        if answered and tally.delivered >= expected:
            return
        progress = tally.delivered + sum(len(s.acked) + len(s.refused) for s in senders)
        if progress != last_seen:
            last_seen, last_progress = progress, time.monotonic()
        elif time.monotonic() - last_progress > quiet:
            return
        await asyncio.sleep(0.02)


def account(row: Row, tally: Tally, senders: list[Sender], receivers: list[Receiver]) -> None:
    """Fill the delivery columns of `row` from what the peers recorded, room by room."""
    # Accepted: acked, or delivered to anyone (then the ack went missing, not the message).
    accepted: defaultdict[str, set[int]] = defaultdict(set)
    for receiver in receivers:
        accepted[receiver.room] |= receiver.seen
    for sender in senders:
        accepted[sender.room] |= sender.acked_keys()
    for sender in senders:
        row.sent += sender.sent
        row.acked += len(sender.acked)
        row.ack_ns += sender.ack_ns
        refused = {sender.index * KEY_BASE + i for i in sender.refused} - accepted[sender.room]
        row.rejected += len(refused)
    row.unanswered = row.sent - sum(len(keys) for keys in accepted.values()) - row.rejected
    row.expected = sum(len(accepted[r.room]) for r in receivers)
    row.delivered = tally.delivered
    for receiver in receivers:
        missing = len(accepted[receiver.room] - receiver.seen)
        row.lost += missing
        row.lost_receivers += bool(missing)
    row.duplicates = tally.duplicates
    row.reordered = tally.reordered
    if tally.presence_frames:
        row.errors["presence_frames"] = tally.presence_frames
    row.latencies_ns = tally.latencies_ns
    row.errors.update(tally.errors)


@dataclass
class Target:
    """The server a scenario runs on: its address, its process, the probe on its CPU."""

    url: str
    server: Any  # psutil handle: RSS per connection, quiet before measuring
    probe: CpuProbe


async def cancel_all(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel the reading tasks and wait until they are gone."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def measure_rss(target: Target, row: Row, baseline: int, count: int, settle: float) -> None:
    """RSS per connection once the sockets are connected and the server has gone idle."""
    await asyncio.sleep(settle)
    if not await process_idle(target.server, QUIET_LIMIT):
        row.errors["not_quiet_after_connect"] += 1
    row.rss_per_conn = (rss_bytes(target.server) - baseline) / count if count else None


async def join(
    row: Row, target: Target, receivers: list[Receiver], opts: Options, peers: list[Peer]
) -> list[Receiver]:
    """Open the receivers a few at a time; the ones that got in (and what they cost, in `row`)."""
    peers.extend(receivers)
    baseline = rss_bytes(target.server)
    started = time.perf_counter()
    joined = await open_all(receivers, target.url, opts.connect_timeout, CONNECT_CONCURRENCY)
    row.setup_s = time.perf_counter() - started
    row.attempted, row.connected = len(receivers), len(joined)
    if joined:
        await measure_rss(target, row, baseline, len(joined), opts.settle)
    return joined


Outcome = tuple[Tally, list[Sender], list[Receiver]]


async def run_fanout(
    row: Row, target: Target, scenario: Scenario, opts: Options, peers: list[Peer]
) -> Outcome:
    """One sender, N receivers; paced by `rate`, or by the probe receiver's window when 0."""
    tally = Tally(tag=uuid.uuid4().hex[:8])
    window = Window(scenario.window, timeout=WINDOW_TIMEOUT)
    receivers = [Receiver(tally) for _ in range(scenario.clients)]
    receivers[0].on_message = window.release
    joined = await join(row, target, receivers, opts, peers)
    sender = Sender(0, tally, opts.body_size)
    peers.append(sender)
    sender.on_refused = window.release
    if not await sender.open(target.url, opts.connect_timeout) or receivers[0] not in joined:
        row.failure = "the sender or the probe receiver could not connect"
        return tally, [sender], joined
    tasks = [asyncio.create_task(r.listen()) for r in joined]
    tasks.append(asyncio.create_task(sender.listen()))
    try:
        target.probe.start()
        begin = time.perf_counter()
        for index in range(scenario.messages):
            if time.perf_counter() - begin > opts.phase_seconds:
                row.cut_short = True
                break
            if scenario.rate:
                # Open loop: a late send goes out at once, it does not shift the schedule.
                delay = begin + index / scenario.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await window.acquire(index)
            await sender.post(index)
        await drain(tally, [sender], joined, opts.drain_timeout)
        row.usage = target.probe.stop()
    finally:
        await cancel_all(tasks)
    row.window_stalls = window.stalls
    return tally, [sender], joined


async def run_rooms(
    row: Row, target: Target, scenario: Scenario, opts: Options, peers: list[Peer]
) -> Outcome:
    """R rooms of C receivers; S senders, each in a room of its own, each at `rate` msgs/s."""
    tally = Tally(tag=uuid.uuid4().hex[:8])
    rooms = room_slugs(scenario.rooms)
    receivers = [Receiver(tally, room) for room in rooms for _ in range(scenario.clients)]
    joined = await join(row, target, receivers, opts, peers)
    # Spread over the rooms: with 10 senders in 50 rooms, rooms 0, 5, 10, ... get one each.
    senders = [
        Sender(i, tally, opts.body_size, rooms[i * scenario.rooms // scenario.senders])
        for i in range(scenario.senders)
    ]
    peers.extend(senders)
    opened = await asyncio.gather(*(s.open(target.url, opts.connect_timeout) for s in senders))
    if not all(opened):
        row.failure = f"{opened.count(False)} of {len(senders)} senders could not connect"
        return tally, senders, joined
    tasks = [asyncio.create_task(r.listen()) for r in joined]
    tasks += [asyncio.create_task(s.listen()) for s in senders]

    async def paced(sender: Sender, begin: float) -> None:
        # Each sender on its own open-loop schedule, the senders evenly staggered.
        offset = sender.index / (scenario.senders * scenario.rate)
        for index in range(scenario.messages):
            if time.perf_counter() - begin > opts.phase_seconds:
                row.cut_short = True
                return
            delay = begin + offset + index / scenario.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await sender.post(index)

    try:
        target.probe.start()
        begin = time.perf_counter()
        await asyncio.gather(*(paced(s, begin) for s in senders))
        await drain(tally, senders, joined, opts.drain_timeout)
        row.usage = target.probe.stop()
    finally:
        await cancel_all(tasks)
    return tally, senders, joined


async def run_burst(
    row: Row, target: Target, scenario: Scenario, opts: Options, peers: list[Peer]
) -> Outcome:
    """S senders each post K messages back to back, all at the same moment, into N receivers."""
    tally = Tally(tag=uuid.uuid4().hex[:8])
    receivers = [Receiver(tally) for _ in range(scenario.clients)]
    joined = await join(row, target, receivers, opts, peers)
    senders = [Sender(i, tally, opts.body_size) for i in range(scenario.senders)]
    peers.extend(senders)
    opened = await asyncio.gather(*(s.open(target.url, opts.connect_timeout) for s in senders))
    if not all(opened):
        row.failure = f"{opened.count(False)} of {len(senders)} senders could not connect"
        return tally, senders, joined
    tasks = [asyncio.create_task(r.listen()) for r in joined]
    tasks += [asyncio.create_task(s.listen()) for s in senders]
    go = asyncio.Event()

    async def fire(sender: Sender) -> None:
        await go.wait()
        for index in range(scenario.messages):
            await sender.post(index)
        # Back to back on purpose: no await between posts but the socket's own.

    try:
        firing = [asyncio.create_task(fire(s)) for s in senders]
        await asyncio.sleep(0)  # every sender is now parked on `go`
        target.probe.start()
        go.set()
        await asyncio.gather(*firing)
        await drain(tally, senders, joined, opts.drain_timeout)
        row.usage = target.probe.stop()
    finally:
        await cancel_all(tasks)
    return tally, senders, joined


async def run_post(
    row: Row, target: Target, scenario: Scenario, opts: Options, peers: list[Peer]
) -> Outcome:
    """One sender, K `chat.send` one after another, each waiting for its answer."""
    tally = Tally(tag=uuid.uuid4().hex[:8])
    receivers = [Receiver(tally, POST_ROOM) for _ in range(scenario.clients)]
    joined = await join(row, target, receivers, opts, peers) if receivers else []
    sender = Sender(0, tally, opts.body_size, POST_ROOM)
    peers.append(sender)
    if not await sender.open(target.url, opts.connect_timeout):
        row.failure = "the sender could not connect"
        return tally, [sender], joined
    tasks = [asyncio.create_task(r.listen()) for r in joined]
    tasks.append(asyncio.create_task(sender.listen()))
    try:
        target.probe.start()
        begin = time.perf_counter()
        for index in range(scenario.messages):
            if time.perf_counter() - begin > opts.phase_seconds:
                row.cut_short = True
                break
            if not await sender.post_and_wait(index, opts.drain_timeout) and sender.closed:
                break
        await drain(tally, [sender], joined, opts.drain_timeout)
        row.usage = target.probe.stop()
    finally:
        await cancel_all(tasks)
    return tally, [sender], joined


async def run_sockets(
    row: Row, target: Target, scenario: Scenario, opts: Options, peers: list[Peer]
) -> Outcome:
    """N sockets connect and subscribe (all at once, or B at a time): time, admission, RSS."""
    tally = Tally(tag=uuid.uuid4().hex[:8])
    receivers = [Receiver(tally) for _ in range(scenario.clients)]
    peers.extend(receivers)
    baseline = rss_bytes(target.server)
    target.probe.start()
    started = time.perf_counter()
    joined = await open_all(receivers, target.url, opts.connect_timeout, scenario.batch or None)
    row.setup_s = time.perf_counter() - started
    row.usage = target.probe.stop()
    row.attempted, row.joined = scenario.clients, len(joined)
    row.hello_ns = [r.hello_ns for r in joined if r.hello_ns is not None]
    row.subscribed_ns = [r.subscribed_ns for r in joined if r.subscribed_ns is not None]
    # Read what the server sends meanwhile (presence), as a browser would.
    tasks = [asyncio.create_task(r.listen()) for r in joined]
    try:
        await measure_rss(target, row, baseline, len(joined), opts.settle)
    finally:
        await cancel_all(tasks)
    # Still there after the settle time: the server did not drop them once they were idle.
    row.connected = sum(r.open_now for r in joined)
    row.dropped = row.joined - row.connected
    return tally, [], []


Runner = Callable[[Row, Target, Scenario, Options, list[Peer]], Awaitable[Outcome]]
RUNNERS: dict[str, Runner] = {
    "fanout": run_fanout,
    "rooms": run_rooms,
    "burst": run_burst,
    "post": run_post,
    "idle": run_sockets,
    "connect": run_sockets,
    "storm": run_sockets,
}


async def wait_ready(server: Server, within: float = START_LIMIT) -> None:
    """Until the server greets a WebSocket with `hello`; fails early if the process died."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not server.running:
            raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
        with contextlib.suppress(TimeoutError, OSError, WebSocketException, ValueError):
            async with ws_connect(server.url, 2) as ws:
                if json.loads(await asyncio.wait_for(ws.recv(), 2)).get("type") == "hello":
                    return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{server.name} did not greet on {server.url}:\n{server.log_tail()}")


async def warm_up(url: str, opts: Options) -> str:
    """A few messages through the room, so imports, pools and caches are not in the numbers."""
    tally = Tally(tag="warmup")
    receivers = await open_all([Receiver(tally), Receiver(tally)], url, opts.connect_timeout, 2)
    sender = Sender(0, tally, opts.body_size)
    if not receivers or not await sender.open(url, opts.connect_timeout):
        return "warm-up could not connect: " + (", ".join(tally.errors) or "?")
    tasks = [asyncio.create_task(r.listen()) for r in receivers]
    tasks.append(asyncio.create_task(sender.listen()))
    try:
        for index in range(10):
            await sender.post(index)
            await asyncio.sleep(0.02)
        await drain(tally, [sender], receivers, 3.0)
    finally:
        await cancel_all(tasks)
        await close_all(receivers)
        await sender.close()
    if tally.delivered < 10 * len(receivers):
        codes = ", ".join(counts(tally.errors)) or "no error"
        return f"warm-up: {tally.delivered}/{10 * len(receivers)} delivered ({codes})"
    return ""


def progress(name: str, scenario: Scenario, stage: str) -> None:
    """A timestamped line on stderr, to match against the server logs."""
    log(f"{name}: {scenario.label}: {stage}")


def run_name(kind: str, db: str, layer: str) -> str:
    """How progress lines name a run: `ceiling`, or `server/db/layer`."""
    return kind if kind == CEILING else f"{kind}/{db}/{layer}"


async def run_one(
    kind: str,
    scenario: Scenario,
    environment: Environment,
    layer: str,
    opts: Options,
    pin: bool,
) -> tuple[Row, list[LogReport]]:
    """Fresh Redis (and RabbitMQ for its layer) and server, warm-up, the scenario, then
    everything closed and stopped."""
    db = "-" if kind == CEILING else environment.db
    layer = "-" if kind == CEILING else layer
    name = run_name(kind, db, layer)
    row = Row(server=kind, db=db, layer=layer, scenario=scenario)
    port = free_port()
    log_path = environment.root / "logs" / f"{kind}-{db}-{layer}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        env = dict(environment.env)
        redis: Any | None = None  # the ceiling has none
        rabbitmq: Any | None = None  # only the RabbitMQ layer's runs have one
        if kind != CEILING:
            private = stack.enter_context(environment.redis(f"{kind}-{port}", pin))
            env["REDIS_URL"], redis = private.url, redis_ps(private)
            env["CHANNEL_LAYER"] = layer
            if layer == "rabbitmq":
                node = stack.enter_context(environment.rabbitmq(f"{kind}-{port}", pin))
                env["CHANNEL_LAYER_URL"], rabbitmq = node.url, rabbitmq_ps(node)
        argv = server_command(kind, port, opts.uvicorn_ws)
        server = stack.enter_context(Server(name, argv, env, log_path, port, server_cores(pin)))
        await wait_ready(server)
        progress(name, scenario, f"up on port {port}, pid {server.ps().pid}; warming up")
        problem = await warm_up(server.url, opts)
        if problem:
            row.failure = problem
            return row, [r for r in [scan_log(server, scenario.label, "warm-up", 0)] if r]
        progress(name, scenario, "running")
        probe = CpuProbe(server=server.ps(), redis=redis, rabbitmq=rabbitmq)
        target = Target(server.url, server.ps(), probe)
        peers: list[Peer] = []
        try:
            tally, senders, receivers = await RUNNERS[scenario.kind](
                row, target, scenario, opts, peers
            )
            if scenario.kind in MESSAGE_KINDS:
                account(row, tally, senders, receivers)
            else:
                row.errors.update(tally.errors)
                if tally.presence_frames:
                    row.errors["presence_frames"] = tally.presence_frames
        finally:
            # Also when interrupted: a server that stops with clients still open waits
            # for their closing handshakes, and this loop is not there to answer.
            progress(name, scenario, "closing the clients")
            await close_all(peers)
        if not server.running:
            row.failure = row.failure or "the server process died during the run"
        # Let the server finish its disconnect work, so what follows is only its shutdown.
        await asyncio.sleep(opts.settle)
        log_end = log_path.stat().st_size
        progress(name, scenario, "stopping the server")
        server.stop()
        parts = [scan_log(server, scenario.label, "run", 0, log_end)]
        parts.append(scan_log(server, scenario.label, "shutdown", log_end))
        return row, [r for r in parts if r is not None]
    raise AssertionError("unreachable")


# ------------------------------------------------------------------ report
def error_cell(row: Row) -> str:
    """The errors column: error counts by kind, then the failure if there was one."""
    notes = counts(row.errors)
    if row.unanswered:
        notes.append(f"unanswered={row.unanswered}")
    if row.window_stalls:
        notes.append(f"window_stalls={row.window_stalls}")
    if row.cut_short:
        notes.append("cut_short(--phase-seconds)")
    errors = " ".join(notes)
    if row.failure:
        errors = f"{errors} FAILED: {row.failure}".strip()
    return errors


def cpu_cells(row: Row) -> list[str]:
    """CPU per op of the server, its Redis and its RabbitMQ, then server, generator and others
    in % of a core."""
    usage = row.usage
    phase = usage.seconds if usage is not None else None
    rough = "~" if phase is not None and phase < PRECISE_PHASE else ""
    cpu, redis, mq = row.per_op("server"), row.per_op("redis"), row.per_op("rabbitmq")
    return [
        rough + fmt(cpu * 1e6 if cpu is not None else None, ".1f"),
        rough + fmt(redis * 1e6 if redis is not None else None, ".1f"),
        rough + fmt(mq * 1e6 if mq is not None else None, ".1f"),
        percent(row.cpu("server"), phase),
        percent(usage.loadgen if usage is not None else None, phase),
        percent(usage.other if usage is not None else None, phase),
    ]


def rss_cell(row: Row) -> str:
    """RSS per connection in KB."""
    return fmt(row.rss_per_conn / 1024 if row.rss_per_conn is not None else None, ".1f")


MESSAGE_HEADERS = [
    "server",
    "db",
    "layer",
    "scenario",
    "conns",
    "setup s",
    "accepted",
    "delivered/expected",
    "lost",
    "dup",
    "ooo",
    "p50 ms",
    "p99 ms",
    "op/s",
    "op",
    "cpu us/op",
    "redis us/op",
    "mq us/op",
    "srv %cpu",
    "gen %cpu",
    "other %cpu",
    "RSS KB/conn",
    "errors",
]


def message_cells(row: Row) -> list[str]:
    """The printed columns of one message row (see bench/README.md for their meaning)."""
    phase = row.usage.seconds if row.usage is not None else None
    lost = f"{row.lost}" + (f" ({row.lost_receivers}r)" * bool(row.lost))
    return [
        row.server,
        row.db,
        row.layer,
        row.scenario.label,
        f"{row.connected}/{row.attempted}",
        fmt(row.setup_s, ".2f"),
        f"{row.sent - row.rejected - row.unanswered}/{row.sent}",
        f"{row.delivered}/{row.expected}",
        lost,
        str(row.duplicates),
        str(row.reordered),
        fmt(row.percentile_ms(0.50), ".2f"),
        fmt(row.percentile_ms(0.99), ".2f"),
        fmt(ratio(float(row.ops), phase), ".0f"),
        row.op,
        *cpu_cells(row),
        rss_cell(row),
        error_cell(row),
    ]


SOCKET_HEADERS = [
    "server",
    "db",
    "layer",
    "scenario",
    "in/tried",
    "lost",
    "total s",
    "conn/s",
    "hello p50 ms",
    "hello p99 ms",
    "subscribed p50 ms",
    "subscribed p99 ms",
    "cpu us/conn",
    "redis us/conn",
    "mq us/conn",
    "srv %cpu",
    "gen %cpu",
    "other %cpu",
    "RSS KB/conn",
    "errors",
]


def socket_cells(row: Row) -> list[str]:
    """The printed columns of one connection row (see bench/README.md for their meaning)."""
    return [
        row.server,
        row.db,
        row.layer,
        row.scenario.label,
        f"{row.joined}/{row.attempted}",
        str(row.dropped),
        fmt(row.setup_s, ".2f"),
        fmt(ratio(float(row.joined), row.setup_s), ".0f"),
        fmt(row.percentile_ms(0.50, row.hello_ns), ".1f"),
        fmt(row.percentile_ms(0.99, row.hello_ns), ".1f"),
        fmt(row.percentile_ms(0.50, row.subscribed_ns), ".1f"),
        fmt(row.percentile_ms(0.99, row.subscribed_ns), ".1f"),
        *cpu_cells(row),
        rss_cell(row),
        error_cell(row),
    ]


def ceilings_of(rows: list[Row]) -> dict[Scenario, Row]:
    """The ceiling's row of each scenario."""
    return {r.scenario: r for r in rows if r.server == CEILING}


def ratio_rows(rows: list[Row]) -> list[list[str]]:
    """Server/ceiling for the same scenario: CPU per op, p50, p99, RSS per connection, time."""
    ceilings = ceilings_of(rows)
    out: list[list[str]] = []
    for row in rows:
        base = ceilings.get(row.scenario)
        if row.server == CEILING or base is None or row.failure:
            continue
        cpu, redis = row.per_op("server"), row.per_op("redis")
        with_redis = cpu + redis if cpu is not None and redis is not None else None
        mq = row.per_op("rabbitmq")
        if with_redis is not None and mq is not None:
            with_redis += mq  # the RabbitMQ layer's broker is a store of the server's too
        timed = row.kind in SOCKET_KINDS
        out.append(
            [
                row.server,
                row.db,
                row.layer,
                row.scenario.label,
                row.op,
                fmt(ratio(cpu, base.per_op("server")), ".1f"),
                fmt(ratio(with_redis, base.per_op("server")), ".1f"),
                fmt(ratio(row.percentile_ms(0.5), base.percentile_ms(0.5)), ".1f"),
                fmt(ratio(row.percentile_ms(0.99), base.percentile_ms(0.99)), ".1f"),
                fmt(ratio(row.rss_per_conn, base.rss_per_conn), ".1f"),
                fmt(ratio(row.setup_s, base.setup_s) if timed else None, ".1f"),
            ]
        )
    return out


RATIO_HEADERS = [
    "server",
    "db",
    "layer",
    "scenario",
    "op",
    "cpu/op",
    "cpu+redis/op",
    "p50",
    "p99",
    "RSS/conn",
    "time",
]


@dataclass(frozen=True)
class Sizes:
    """The sizes a target is set at, to say when a row's differ."""

    label: str
    matches: Callable[[Scenario], bool]

    def note(self, scenario: Scenario) -> str:
        """`[target is set at ...]` when the scenario is not the target's own size."""
        return "" if self.matches(scenario) else f" [target is set at {self.label}]"


FANOUT_SIZE = Sizes("200 clients", lambda s: s.clients == 200)
PACED_SIZE = Sizes("100 @ 20/s", lambda s: (s.clients, s.rate) == (100, 20))
ROOMS_SIZE = Sizes(
    "50x10, 10 senders at 10/s",
    lambda s: (s.rooms, s.clients, s.senders, s.rate) == (50, 10, 10, 10),
)
BURST_SIZE = Sizes("20x20->100", lambda s: (s.senders, s.messages, s.clients) == (20, 20, 100))
POST_SIZE = Sizes("1000 posts", lambda s: s.messages == 1000)
CONNECT_SIZE = Sizes("10000 by 200", lambda s: (s.clients, s.batch) == (10_000, 200))
STORM_SIZE = Sizes("1000", lambda s: s.clients == 1000)
IDLE_SIZE = Sizes("1000", lambda s: s.clients == 1000)


def target_lines(rows: list[Row]) -> list[str]:
    """The targets of bench/README.md, judged on the rows whose scenario they apply to."""
    lines: list[str] = []
    ceilings = ceilings_of(rows)

    def times(row: Row, value: Callable[[Row], float | None]) -> float | None:
        base = ceilings.get(row.scenario)
        return None if base is None else ratio(value(row), value(base))

    def cpu(r: Row) -> float | None:
        return r.per_op("server")

    def p50(r: Row) -> float | None:
        return r.percentile_ms(0.5)

    def at_most(value: float | None, limit: float) -> str:
        return verdict(value is not None and value <= limit)

    for row in rows:
        s = row.scenario
        who = f"{row.server:8} {row.db:8} {row.layer:8} {s.label}"
        if row.failure:
            lines.append(f"FAIL  {who}: {row.failure}")
            continue
        relative = row.server != CEILING and s in ceilings
        if s.kind in MESSAGE_KINDS:
            clean = row.lost == 0 and row.duplicates == 0 and row.unanswered == 0
            lines.append(
                f"{verdict(clean)}  {who}: every message exactly once (lost {row.lost}, "
                f"dup {row.duplicates}, unanswered {row.unanswered}, refused {row.rejected})"
            )
        if s.kind == "fanout" and not s.rate and relative:
            x = times(row, cpu)
            lines.append(
                f"{at_most(x, 3)}  {who}: CPU per delivery {fmt(x, '.1f')}x the ceiling's "
                f"(<= 3x){FANOUT_SIZE.note(s)}"
            )
        if s.kind == "fanout" and s.rate:
            p99 = row.percentile_ms(0.99)
            lines.append(
                f"{at_most(p99, 10)}  {who}: p99 {fmt(p99, '.1f')} ms (<= 10 ms)"
                f"{PACED_SIZE.note(s)}"
            )
        if s.kind in ("rooms", "burst") and relative:
            cpu_limit, p50_limit = (5.0, 3.0) if s.kind == "rooms" else (3.0, 1.5)
            sizes = ROOMS_SIZE if s.kind == "rooms" else BURST_SIZE
            x, y = times(row, cpu), times(row, p50)
            lines.append(
                f"{at_most(x, cpu_limit)}  {who}: CPU per delivery {fmt(x, '.1f')}x the "
                f"ceiling's (<= {cpu_limit:g}x){sizes.note(s)}"
            )
            lines.append(
                f"{at_most(y, p50_limit)}  {who}: p50 {fmt(y, '.1f')}x the ceiling's "
                f"(<= {p50_limit:g}x){sizes.note(s)}"
            )
        if s.kind == "post":
            us = row.per_op("server")
            us = us * 1e6 if us is not None else None
            text = f"{who}: server CPU {fmt(us, '.0f')} us per chat.send"
            if s.clients:
                # The target is the post path alone; with subscribers it includes the fan-out.
                lines.append(f"INFO  {text} (fan-out to {s.clients} included; no target)")
            else:
                lines.append(f"{at_most(us, 600)}  {text} (<= 600 us){POST_SIZE.note(s)}")
        if s.kind in SOCKET_KINDS:
            admitted = row.joined == row.attempted and row.dropped == 0
            sizes = {"connect": CONNECT_SIZE, "storm": STORM_SIZE, "idle": IDLE_SIZE}[s.kind]
            lines.append(
                f"{verdict(admitted)}  {who}: {row.joined}/{row.attempted} got in, "
                f"{row.dropped} lost after{sizes.note(s)}"
            )
        if s.kind == "connect" and relative:
            x = times(row, lambda r: r.setup_s)
            lines.append(
                f"{at_most(x, 2)}  {who}: {fmt(row.setup_s, '.1f')} s, {fmt(x, '.1f')}x the "
                f"ceiling's time (<= 2x){CONNECT_SIZE.note(s)}"
            )
        if s.kind == "storm":
            p99 = row.percentile_ms(0.99, row.hello_ns)
            lines.append(
                f"{at_most(p99, 500)}  {who}: handshake p99 {fmt(p99, '.0f')} ms "
                f"(<= 500 ms){STORM_SIZE.note(s)}"
            )
        if s.kind == "idle":
            kb = row.rss_per_conn / 1024 if row.rss_per_conn is not None else None
            lines.append(
                f"{at_most(kb, 25)}  {who}: {fmt(kb, '.1f')} KB per idle connection "
                f"(<= 25 KB){IDLE_SIZE.note(s)}"
            )
    return lines


# ------------------------------------------------------------------ command line
FULL = [
    Scenario("fanout", 200, 500, 0.0, WINDOW),
    Scenario("fanout", 100, 500, 20.0),
    Scenario("rooms", 10, 100, 10.0, senders=10, rooms=50),
    Scenario("burst", 100, 20, senders=20),
    Scenario("connect", 10_000, batch=200),
    Scenario("storm", 1000),
    Scenario("idle", 1000),
    Scenario("post", 0, 1000),
    Scenario("post", 10, 1000),
]
QUICK = [
    Scenario("fanout", 20, 200, 0.0, WINDOW),
    Scenario("fanout", 20, 100, 20.0),
    Scenario("rooms", 4, 20, 10.0, senders=3, rooms=5),
    Scenario("burst", 20, 5, senders=5),
    Scenario("connect", 300, batch=50),
    Scenario("storm", 100),
    Scenario("idle", 100),
    Scenario("post", 0, 200),
    Scenario("post", 3, 200),
]


def scenarios_from(args: argparse.Namespace) -> list[Scenario]:
    """The preset's scenarios (those of the `--only` kinds), or the ones the options ask for."""
    if args.full or args.quick:
        preset = FULL if args.full else QUICK
        only = set(args.only.split(",")) if args.only else set(KINDS)
        return [s for s in preset if s.kind in only]
    window = args.window or WINDOW
    fanout_asked = any(v is not None for v in (args.clients, args.messages, args.rate, args.window))
    others = (args.idle, args.burst_senders, args.rooms, args.connect, args.storm, args.post)
    out: list[Scenario] = []
    if fanout_asked or not any(others):
        out.append(
            Scenario(
                "fanout",
                args.clients or 100,
                500 if args.messages is None else args.messages,
                20.0 if args.rate is None else args.rate,
                window,
            )
        )
    if args.rooms:
        out.append(
            Scenario(
                "rooms",
                args.room_clients,
                args.room_messages,
                args.room_rate,
                senders=args.room_senders,
                rooms=args.rooms,
            )
        )
    if args.burst_senders:
        out.append(
            Scenario(
                "burst", args.burst_receivers, args.burst_messages or 10, senders=args.burst_senders
            )
        )
    if args.connect:
        out.append(Scenario("connect", args.connect, batch=args.connect_batch))
    if args.storm:
        out.append(Scenario("storm", args.storm))
    if args.idle:
        out.append(Scenario("idle", args.idle))
    if args.post:
        subscribers = [int(n) for n in str(args.post_subscribers).split(",")]
        out += [Scenario("post", n, args.post) for n in subscribers]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description="Socket benchmarks of the /ws/ gateway against a websockets ceiling.",
        epilog="See bench/README.md for the scenarios, the columns and the targets.",
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="small sizes of every scenario")
    preset.add_argument("--full", action="store_true", help="the target scenarios")
    parser.add_argument(
        "--only", metavar="KINDS", help=f"with a preset: only these kinds ({','.join(KINDS)})"
    )
    parser.add_argument("--clients", type=int, help="fan-out receivers (default 100)")
    parser.add_argument("--messages", type=int, help="fan-out messages (default 500)")
    parser.add_argument("--rate", type=float, help="messages/s; 0 = window-paced (default 20)")
    parser.add_argument(
        "--window", type=int, help=f"unacknowledged messages at rate 0 (default {WINDOW})"
    )
    parser.add_argument(
        "--rooms", type=int, default=0, metavar="R", help="R rooms, senders in some"
    )
    parser.add_argument("--room-clients", type=int, default=10, metavar="C", help="per room")
    parser.add_argument("--room-senders", type=int, default=10, metavar="S")
    parser.add_argument("--room-rate", type=float, default=10.0, metavar="F", help="per sender")
    parser.add_argument("--room-messages", type=int, default=100, metavar="M", help="per sender")
    parser.add_argument("--burst-senders", type=int, default=0, metavar="S")
    parser.add_argument("--burst-messages", type=int, metavar="K", help="per sender (default 10)")
    parser.add_argument("--burst-receivers", type=int, default=100, metavar="N")
    parser.add_argument(
        "--connect", type=int, default=0, metavar="N", help="N sockets, B at a time"
    )
    parser.add_argument("--connect-batch", type=int, default=200, metavar="B")
    parser.add_argument("--storm", type=int, default=0, metavar="N", help="N sockets at once")
    parser.add_argument("--idle", type=int, default=0, metavar="N", help="N idle sockets at once")
    parser.add_argument("--post", type=int, default=0, metavar="K", help="K chat.send in sequence")
    parser.add_argument(
        "--post-subscribers",
        default="0,10",
        metavar="N[,N]",
        help="subscribers of the post room, one row each (default 0,10)",
    )
    parser.add_argument(
        "--server",
        default="daphne",
        help="daphne, uvicorn, granian (comma-separated), both (daphne,uvicorn) or all; "
        "the ceiling always runs",
    )
    parser.add_argument("--db", default="sqlite", help="sqlite, postgres or both")
    parser.add_argument(
        "--layer",
        default="pubsub",
        help="the Django servers' channel layer(s), comma-separated: pubsub, core (Redis) or "
        "rabbitmq (a private RabbitMQ node per run, like the private Redis)",
    )
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="the PostgreSQL server a fresh database is created on (--db postgres)",
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        help="DATABASE_CONN_MAX_AGE for the Django servers (default: the settings' own)",
    )
    parser.add_argument(
        "--uvicorn-ws",
        default="websockets-sansio",  # as the README's production command
        choices=UVICORN_WS,
        help="uvicorn's WebSocket implementation (--ws)",
    )
    parser.add_argument("--only-ceiling", action="store_true", help="test the harness alone")
    parser.add_argument("--body-size", type=int, default=100, help="chat body length (bytes)")
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--drain-timeout", type=float, default=5.0, help="quiet time ending a run")
    parser.add_argument("--settle", type=float, default=1.0, help="wait before reading RSS")
    parser.add_argument(
        "--phase-seconds", type=float, default=120.0, help="cap on one run's sending phase"
    )
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="whole-run time cap")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each run, wait up to this long for other processes to go quiet",
    )
    parser.add_argument(
        "--ws-rate",
        type=float,
        default=WS_LIMIT_LIFTED,
        help=f"SWITCHBOARD_WS_RATE for the Django servers (default {WS_LIMIT_LIFTED:g}; "
        "the server's own is 20)",
    )
    parser.add_argument(
        "--ws-burst",
        type=float,
        default=WS_LIMIT_LIFTED,
        help=f"SWITCHBOARD_WS_BURST likewise (default {WS_LIMIT_LIFTED:g}; the server's own is 40)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args(argv)
    sizes = [args.clients, args.messages, args.window, args.idle, args.burst_senders]
    sizes += [args.rooms, args.connect, args.storm, args.post]
    if any(v is not None and v < 0 for v in sizes) or (args.rate or 0) < 0:
        parser.error("sizes and rates must not be negative")
    if args.clients == 0 or args.window == 0:
        parser.error("--clients and --window must be at least 1")
    if args.rooms and (args.room_clients < 1 or args.room_senders < 1 or args.room_rate <= 0):
        parser.error("--room-clients, --room-senders and --room-rate must be positive")
    if args.connect and args.connect_batch < 1:
        parser.error("--connect-batch must be at least 1")
    if args.only and not set(args.only.split(",")) <= set(KINDS):
        parser.error(f"--only takes {', '.join(KINDS)} (comma-separated)")
    if args.only and not (args.quick or args.full):
        parser.error("--only filters a preset: give --quick or --full")
    try:
        [int(n) for n in str(args.post_subscribers).split(",")]
    except ValueError:
        parser.error("--post-subscribers takes numbers, comma-separated")
    return args


async def run_all(
    servers: list[str],
    scenarios: list[Scenario],
    environments: list[Environment],
    layers: list[str],
    opts: Options,
    pin: bool,
) -> tuple[list[Row], list[LogReport]]:
    """Every scenario on the ceiling, then on every server, database and channel layer,
    scenario by scenario."""
    rows: list[Row] = []
    logs: list[LogReport] = []
    runs = [(CEILING, environments[0], "-")] if CEILING in servers else []
    runs += [
        (kind, env, layer)
        for kind in servers
        if kind != CEILING
        for env in environments
        for layer in layers
    ]
    for scenario in scenarios:
        for kind, environment, layer in runs:
            db = "-" if kind == CEILING else environment.db
            name = run_name(kind, db, layer)
            other = await machine_quiet(opts.quiet_wait)
            if other > MACHINE_QUIET:
                progress(name, scenario, f"the machine is busy ({other:.0%} of a core) anyway")
            progress(name, scenario, "starting")
            try:
                row, found = await run_one(kind, scenario, environment, layer, opts, pin)
            except (RuntimeError, TimeoutError) as error:
                row = Row(kind, db, scenario, layer=layer, failure=str(error)[:2000])
                found = []
            rows.append(row)
            logs.extend(found)
    return rows, logs


def server_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The settings the Django servers run with that differ from the defaults."""
    overrides = {
        "SWITCHBOARD_WS_RATE": f"{args.ws_rate:g}",
        "SWITCHBOARD_WS_BURST": f"{args.ws_burst:g}",
        # Every simulated client comes from 127.0.0.1, so the per-address cap on anonymous
        # sockets (a defence against one host opening thousands) would refuse most of them,
        # and the posting rate (one budget per address) would refuse most posts. Posts are
        # still counted against the rate (its cost is measured): only its limit is lifted.
        "SWITCHBOARD_WS_MAX_PER_ADDRESS": "0",
        "CHAT_POST_RATE": "100000000/min",
    }
    if args.conn_max_age is not None:
        overrides["DATABASE_CONN_MAX_AGE"] = str(args.conn_max_age)
    return overrides


def prepare_environments(
    root: Path, django: bool, rooms: list[str], args: argparse.Namespace, notes: list[str]
) -> list[Environment]:
    """A migrated database with `rooms` for each `--db` that answers (a note for each that not)."""
    if not django:
        return [Environment.prepare(root, django=False)]
    environments: list[Environment] = []
    for db in parse_databases(args.db):
        try:
            log(f"preparing the {db} database")
            environments.append(
                Environment.prepare(
                    root, django=True, db=db, postgres_url=args.postgres_url, rooms=rooms
                )
            )
        except DatabaseUnavailable as error:
            notes.append(f"{error}: the {db} rows are skipped")
    return environments


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios on the ceiling and the chosen servers; print the tables."""
    args = parse_args(argv)
    stop_on_signals()
    scenarios = scenarios_from(args)
    notes: list[str] = []
    if args.only_ceiling:
        servers = [CEILING]
    else:
        chosen, notes = parse_servers(args.server)
        servers = [CEILING, *chosen]
    parse_databases(args.db)  # an unknown name stops here, before anything starts
    layers = parse_layers(args.layer)
    rooms = [POST_ROOM, *room_slugs(max(s.rooms for s in scenarios))]
    # Every socket is a file on both sides: the load generator's and the server's.
    wanted = max(s.receivers + s.senders for s in scenarios) + 1000
    short = raise_fd_limit(wanted)
    if short:
        notes.append(short)
    pin = can_pin()
    if pin:
        os.sched_setaffinity(0, {LOADGEN_CORE})
    else:
        notes.append("fewer than 2 usable cores: servers and load generator are not pinned")
    opts = from_args(Options, args)
    overrides = server_overrides(args)
    root = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    rows: list[Row] = []
    logs: list[LogReport] = []
    environments: list[Environment] = []
    interrupted = False
    try:
        environments = prepare_environments(root, servers != [CEILING], rooms, args, notes)
        if not environments:
            servers = [CEILING]
            environments = [Environment.prepare(root, django=False)]
        for environment in environments:
            environment.env.update(overrides)
        if servers != [CEILING]:
            notes.append(
                "the Django servers ran with "
                + " ".join(f"{k}={v}" for k, v in overrides.items())
                + " (not the defaults)"
            )
            notes += [f"db {e.db}: {e.where}" for e in environments]
            if "rabbitmq" in layers:
                notes.append(
                    "layer rabbitmq: a fresh private RabbitMQ node per run, beside the private "
                    "Redis (presence, cache); `mq` columns are its CPU"
                )
        rows, logs = asyncio.run(
            asyncio.wait_for(
                run_all(servers, scenarios, environments, layers, opts, pin), args.max_seconds
            )
        )
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: every server was stopped", file=sys.stderr)
    except TimeoutError:
        print(f"stopped after --max-seconds {args.max_seconds:g}", file=sys.stderr)
    finally:
        for environment in environments:
            environment.discard()
        report(rows, logs, notes, pin)
        keep_or_remove(root, args.keep or bool(logs))
    return 130 if interrupted else (1 if any(r.failure for r in rows) else 0)


def report(rows: list[Row], logs: list[LogReport], notes: list[str], pin: bool) -> None:
    """Print the result tables, the ratios, the targets, notes and server log excerpts."""
    if not rows:
        for note in notes:
            print(f"note: {note}")
        return
    where = f"servers on core {SERVER_CORE}, load generator on core {LOADGEN_CORE}"
    print(f"\nSocket benchmark ({where if pin else 'not pinned'}; python {sys.version.split()[0]})")
    messages = [message_cells(r) for r in rows if r.kind in MESSAGE_KINDS]
    if messages:
        print("\nMessages (p50/p99: delivery latency; post rows: chat.send -> chat.sent)")
        print(table(MESSAGE_HEADERS, messages))
    sockets = [socket_cells(r) for r in rows if r.kind in SOCKET_KINDS]
    if sockets:
        print("\nConnections")
        print(table(SOCKET_HEADERS, sockets))
    ratios = ratio_rows(rows)
    if ratios:
        print("\nServer / ceiling (same scenario; lower is better, 1.0 = as good as the ceiling)")
        print(table(RATIO_HEADERS, ratios))
    print("\nTargets")
    print("\n".join(target_lines(rows)))
    refused = Counter[str]()
    for row in rows:
        refused.update({k: v for k, v in row.errors.items() if k.startswith("sender:")})
    if refused.get("sender:rate_limited"):
        unanswered = sum(r.unanswered for r in rows)
        notes.append(
            f"the server rate-limited senders: {refused['sender:rate_limited']} rate_limited "
            f"errors (each sender paused {RATE_LIMIT_PAUSE} s after one), {unanswered} "
            "chat.send frames never answered; the limit is per "
            "socket (SWITCHBOARD_WS_RATE / SWITCHBOARD_WS_BURST, see --ws-rate / --ws-burst)"
        )
    for note in notes:
        print(f"note: {note}")
    print_logs(logs)


if __name__ == "__main__":
    sys.exit(main())
