"""Fan-out benchmark: N WebSocket clients in one room, on the gateway and on a `websockets` ceiling.

Run `.venv/bin/python -m bench.fanout --quick` (see bench/README.md). The script starts its
own Redis, SQLite database and servers on loopback, pins them to core 0 and itself (the load
generator) to core 1, runs each scenario against each server, prints one row per run, the
server/ceiling ratios and the targets, and stops every process it started.
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
from collections import Counter
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
    SERVER_CORE,
    UVICORN_WS,
    Environment,
    LogReport,
    Server,
    can_pin,
    from_args,
    keep_or_remove,
    log,
    redis_ps,
    scan_log,
    server_command,
    server_cores,
    stop_on_signals,
    uvicorn_installed,
)
from bench.ws import ws_connect
from config.redis_server import free_port

ROOM = "lobby"
CHANNEL = f"room:{ROOM}"
SERVERS = ("daphne", "uvicorn")
# Receivers open their sockets this many at a time, except in the idle scenario, whose point
# is that they all arrive at once.
CONNECT_CONCURRENCY = 50
# The sender's sequence numbers are per sender; a key packs (sender, index) into one int.
KEY_BASE = 1_000_000
# How long the window waits for the probe before it gives a slot up: a message the server
# dropped without a word (its rate limiter does that) must not stall the sender forever.
WINDOW_TIMEOUT = 2.0
# psutil's CPU times tick at 10 ms; over a shorter phase the CPU columns are rough.
PRECISE_PHASE = 1.0
# Idle means idle (joins announced, buffers flushed): after connecting, wait (up to
# QUIET_LIMIT s) until the server uses under 5% of a core before reading RSS or sending.
QUIET_LIMIT = 60.0


# ------------------------------------------------------------------ scenarios and results
@dataclass(frozen=True)
class Scenario:
    """One row of the table: what to run, with which sizes."""

    kind: str  # "fanout", "idle" or "burst"
    clients: int
    messages: int = 0
    rate: float = 0.0
    window: int = 10
    senders: int = 1

    @property
    def label(self) -> str:
        """The scenario column, e.g. `fanout 200 x500 window 10`."""
        if self.kind == "idle":
            return f"idle {self.clients}"
        if self.kind == "burst":
            return f"burst {self.senders}x{self.messages}->{self.clients}"
        pace = f"{self.rate:g}/s" if self.rate else f"window {self.window}"
        return f"fanout {self.clients} x{self.messages} {pace}"


@dataclass
class Row:
    """What one scenario measured on one server."""

    server: str
    scenario: Scenario
    connected: int = 0
    attempted: int = 0
    sent: int = 0
    rejected: int = 0
    unanswered: int = 0
    delivered: int = 0
    expected: int = 0
    lost: int = 0
    lost_receivers: int = 0
    duplicates: int = 0
    reordered: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    usage: Usage | None = None  # CPU over the measured phase
    rss_per_conn: float | None = None
    setup_s: float | None = None
    window_stalls: int = 0
    cut_short: bool = False
    errors: Counter[str] = field(default_factory=Counter)
    failure: str = ""

    def percentile_ms(self, fraction: float) -> float | None:
        """The latency (ms) that `fraction` of the deliveries did not exceed."""
        value = percentile(self.latencies_ns, fraction)
        return None if value is None else value / 1e6

    def cpu(self, name: str) -> float | None:
        """CPU seconds of `server` or its `redis` over the measured phase, if measured."""
        return None if self.usage is None else self.usage.cpu.get(name)

    def per_delivery(self, name: str) -> float | None:
        """The CPU seconds of `server` or `redis` divided by the distinct deliveries."""
        seconds = self.cpu(name)
        if seconds is None or not self.delivered:
            return None
        return seconds / self.delivered


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
    """One subscribed socket that records every `chat.message` of this run it gets."""

    def __init__(self, tally: Tally, on_message: Callable[[int], None] | None = None) -> None:
        self.tally = tally
        self.on_message = on_message
        self.ws: ClientConnection | None = None
        self.seen: set[int] = set()
        self.last_seq = 0

    async def open(self, url: str, open_timeout: float) -> bool:
        """Connect, read `hello`, subscribe and wait for `subscribed`; False on any failure."""
        try:
            async with asyncio.timeout(open_timeout):
                self.ws = await ws_connect(url, open_timeout)
                hello = json.loads(await self.ws.recv())
                if hello.get("type") != "hello":
                    self.tally.errors[f"greeting:{hello.get('type')}"] += 1
                    return False
                await self.ws.send(json.dumps({"type": "subscribe", "channel": CHANNEL, "ref": 1}))
                while True:
                    frame = json.loads(await self.ws.recv())
                    kind = frame.get("type")
                    if kind == "subscribed" and frame.get("ref") == 1:
                        return True
                    if kind == "error":
                        self.tally.errors[f"subscribe:{frame.get('code')}"] += 1
                        return False
                    # Presence and anything else a newer server sends before the reply.
        except (TimeoutError, OSError, WebSocketException, ValueError) as error:
            self.tally.errors[f"connect:{type(error).__name__}"] += 1
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
                if frame.get("type") != "chat.message" or frame.get("channel") != CHANNEL:
                    continue
                parts = str(frame.get("body", "")).split("|", 4)
                if len(parts) < 4 or parts[0] != tag:
                    continue  # warm-up or history of an earlier run
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
    """A socket (not subscribed) that posts into the room and collects acks and refusals."""

    def __init__(self, index: int, tally: Tally, body_size: int) -> None:
        self.index = index
        self.tally = tally
        self.body_size = body_size
        self.ws: ClientConnection | None = None
        self.sent = 0
        self.acked: set[int] = set()
        self.refused: dict[int, str] = {}
        self.on_refused: Callable[[int], None] | None = None
        self.paused_until = 0.0  # after a rate_limited refusal (monotonic time)
        self.closed = False

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
        head = f"{self.tally.tag}|{self.index}|{index}|{time.perf_counter_ns()}|"
        body = head + "x" * max(0, self.body_size - len(head))
        frame = {
            "type": "chat.send",
            "room": ROOM,
            "body": body,
            "client_id": str(uuid.uuid4()),
            "ref": index,
        }
        try:
            await self.ws.send(json.dumps(frame))
        except ConnectionClosed as closed:
            self.closed = True
            code = closed.rcvd.code if closed.rcvd is not None else "none"
            self.tally.errors[f"sender:closed:{code}"] += 1
            return
        self.sent += 1

    async def listen(self) -> None:
        """Record `chat.sent` acks and `error` refusals (by code) until the socket closes."""
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                frame = json.loads(raw)
                kind, ref = frame.get("type"), frame.get("ref")
                if kind == "chat.sent" and isinstance(ref, int):
                    self.acked.add(ref)
                elif kind == "error":
                    code = str(frame.get("code"))
                    self.tally.errors[f"sender:{code}"] += 1
                    if code == "rate_limited":
                        self.paused_until = time.monotonic() + RATE_LIMIT_PAUSE
                    if isinstance(ref, int):
                        self.refused[ref] = code
                        if self.on_refused is not None:
                            self.on_refused(ref)

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
    """Wait until every sent message is answered and every acked one reached every receiver.

    Gives up when nothing arrived for `quiet` seconds (a message or an answer is missing).
    """
    last_progress, last_seen = time.monotonic(), -1
    hard_stop = time.monotonic() + max(quiet * 6, 60.0)
    while time.monotonic() < hard_stop:
        acked = sum(len(s.acked) for s in senders)
        answered = all(len(s.acked) + len(s.refused) >= s.sent for s in senders)
        if answered and tally.delivered >= acked * len(receivers):
            return
        progress = tally.delivered + sum(len(s.acked) + len(s.refused) for s in senders)
        if progress != last_seen:
            last_seen, last_progress = progress, time.monotonic()
        elif time.monotonic() - last_progress > quiet:
            return
        await asyncio.sleep(0.02)


def account(row: Row, tally: Tally, senders: list[Sender], receivers: list[Receiver]) -> None:
    """Fill the delivery columns of `row` from what the peers recorded."""
    # Accepted: acked, or delivered to anyone (then the ack went missing, not the message).
    accepted: set[int] = set()
    for receiver in receivers:
        accepted |= receiver.seen
    for sender in senders:
        accepted |= sender.acked_keys()
        row.sent += sender.sent
        refused = {sender.index * KEY_BASE + i for i in sender.refused} - accepted
        row.rejected += len(refused)
    row.unanswered = row.sent - len(accepted) - row.rejected
    row.expected = len(accepted) * len(receivers)
    row.delivered = tally.delivered
    for receiver in receivers:
        missing = len(accepted - receiver.seen)
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
    await measure_rss(target, row, baseline, len(joined), opts.settle)
    return joined


async def run_fanout(
    row: Row, target: Target, scenario: Scenario, opts: Options, peers: list[Peer]
) -> tuple[Tally, list[Sender], list[Receiver]]:
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


async def run_idle(
    row: Row, target: Target, scenario: Scenario, opts: Options, peers: list[Peer]
) -> tuple[Tally, list[Sender], list[Receiver]]:
    """N sockets opened all at once (no pacing): how many get in, and what each one costs."""
    tally = Tally(tag=uuid.uuid4().hex[:8])
    receivers = [Receiver(tally) for _ in range(scenario.clients)]
    peers.extend(receivers)
    baseline = rss_bytes(target.server)
    started = time.perf_counter()
    joined = await open_all(receivers, target.url, opts.connect_timeout, None)
    row.setup_s = time.perf_counter() - started
    row.attempted = scenario.clients
    # Read what the server sends meanwhile (presence), as a browser would.
    tasks = [asyncio.create_task(r.listen()) for r in joined]
    try:
        await measure_rss(target, row, baseline, len(joined), opts.settle)
    finally:
        await cancel_all(tasks)
    # Still there after the settle time: the server did not drop them once they were idle.
    row.connected = sum(r.ws is not None and r.ws.state is State.OPEN for r in joined)
    return tally, [], joined


async def run_burst(
    row: Row, target: Target, scenario: Scenario, opts: Options, peers: list[Peer]
) -> tuple[Tally, list[Sender], list[Receiver]]:
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


Runner = Callable[
    [Row, Target, Scenario, Options, list[Peer]],
    Awaitable[tuple[Tally, list[Sender], list[Receiver]]],
]
RUNNERS: dict[str, Runner] = {"fanout": run_fanout, "idle": run_idle, "burst": run_burst}


async def wait_ready(server: Server, within: float = 60.0) -> None:
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


def progress(kind: str, scenario: Scenario, stage: str) -> None:
    """A timestamped line on stderr, to match against the server logs."""
    log(f"{kind}: {scenario.label}: {stage}")


async def run_one(
    kind: str, scenario: Scenario, environment: Environment, opts: Options, pin: bool
) -> tuple[Row, list[LogReport]]:
    """Fresh Redis and server, warm-up, the scenario, then everything closed and stopped."""
    row = Row(server=kind, scenario=scenario)
    port = free_port()
    log_path = environment.root / "logs" / f"{kind}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        env = dict(environment.env)
        redis: Any | None = None  # the ceiling has none
        if kind != CEILING:
            private = stack.enter_context(environment.redis(f"{kind}-{port}", pin))
            env["REDIS_URL"], redis = private.url, redis_ps(private)
        argv = server_command(kind, port, opts.uvicorn_ws)
        server = stack.enter_context(Server(kind, argv, env, log_path, port, server_cores(pin)))
        await wait_ready(server)
        progress(kind, scenario, f"up on port {port}, pid {server.ps().pid}; warming up")
        problem = await warm_up(server.url, opts)
        if problem:
            row.failure = problem
            return row, [r for r in [scan_log(server, scenario.label, "warm-up", 0)] if r]
        progress(kind, scenario, "running")
        target = Target(server.url, server.ps(), CpuProbe(server=server.ps(), redis=redis))
        peers: list[Peer] = []
        try:
            tally, senders, receivers = await RUNNERS[scenario.kind](
                row, target, scenario, opts, peers
            )
            account(row, tally, senders, receivers)
        finally:
            # Also when interrupted: a server that stops with clients still open waits
            # for their closing handshakes, and this loop is not there to answer.
            progress(kind, scenario, "closing the clients")
            await close_all(peers)
        if not server.running:
            row.failure = row.failure or "the server process died during the run"
        # Let the server finish its disconnect work, so what follows is only its shutdown.
        await asyncio.sleep(opts.settle)
        log_end = log_path.stat().st_size
        progress(kind, scenario, "stopping the server")
        server.stop()
        parts = [scan_log(server, scenario.label, "run", 0, log_end)]
        parts.append(scan_log(server, scenario.label, "shutdown", log_end))
        return row, [r for r in parts if r is not None]
    raise AssertionError("unreachable")


# ------------------------------------------------------------------ report
def cells(row: Row) -> list[str]:
    """The printed columns of one row (see bench/README.md for their meaning)."""
    s = row.scenario
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
    usage = row.usage
    phase = usage.seconds if usage is not None else None
    cpu = row.per_delivery("server")
    redis = row.per_delivery("redis")
    rate = ratio(float(row.delivered), phase) if s.kind != "idle" else None
    rough = "~" if phase is not None and phase < PRECISE_PHASE else ""
    return [
        row.server,
        s.label,
        f"{row.connected}/{row.attempted}",
        fmt(row.setup_s, ".2f"),
        "-" if s.kind == "idle" else f"{row.sent - row.rejected - row.unanswered}/{row.sent}",
        "-" if s.kind == "idle" else f"{row.delivered}/{row.expected}",
        "-" if s.kind == "idle" else f"{row.lost}" + (f" ({row.lost_receivers}r)" * bool(row.lost)),
        "-" if s.kind == "idle" else str(row.duplicates),
        "-" if s.kind == "idle" else str(row.reordered),
        fmt(row.percentile_ms(0.50), ".2f"),
        fmt(row.percentile_ms(0.99), ".2f"),
        fmt(rate, ".0f"),
        rough + fmt(cpu * 1e6 if cpu is not None else None, ".1f"),
        rough + fmt(redis * 1e6 if redis is not None else None, ".1f"),
        percent(row.cpu("server"), phase),
        percent(usage.loadgen if usage is not None else None, phase),
        percent(usage.other if usage is not None else None, phase),
        fmt(row.rss_per_conn / 1024 if row.rss_per_conn is not None else None, ".1f"),
        errors,
    ]


HEADERS = [
    "server",
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
    "dlv/s",
    "cpu us/dlv",
    "redis us/dlv",
    "srv %cpu",
    "gen %cpu",
    "other %cpu",
    "RSS KB/conn",
    "errors",
]


def ratio_rows(rows: list[Row]) -> list[list[str]]:
    """Server/ceiling for the same scenario: CPU per delivery, p50, p99, RSS per connection."""
    ceilings = {r.scenario: r for r in rows if r.server == CEILING}
    out: list[list[str]] = []
    for row in rows:
        base = ceilings.get(row.scenario)
        if row.server == CEILING or base is None:
            continue
        cpu = row.per_delivery("server")
        redis = row.per_delivery("redis")
        with_redis = cpu + redis if cpu is not None and redis is not None else None
        out.append(
            [
                row.server,
                row.scenario.label,
                fmt(ratio(cpu, base.per_delivery("server")), ".1f"),
                fmt(ratio(with_redis, base.per_delivery("server")), ".1f"),
                fmt(ratio(row.percentile_ms(0.5), base.percentile_ms(0.5)), ".1f"),
                fmt(ratio(row.percentile_ms(0.99), base.percentile_ms(0.99)), ".1f"),
                fmt(ratio(row.rss_per_conn, base.rss_per_conn), ".1f"),
            ]
        )
    return out


def target_lines(rows: list[Row]) -> list[str]:
    """The targets of bench/README.md, judged on the rows whose scenario they apply to."""
    lines: list[str] = []
    ceilings = {r.scenario: r for r in rows if r.server == CEILING}

    for row in rows:
        s, who = row.scenario, f"{row.server:8} {row.scenario.label}"
        if row.failure:
            lines.append(f"FAIL  {who}: {row.failure}")
            continue
        if s.kind != "idle":
            clean = row.lost == 0 and row.duplicates == 0 and row.unanswered == 0
            lines.append(
                f"{verdict(clean)}  {who}: every message exactly once (lost {row.lost}, "
                f"dup {row.duplicates}, unanswered {row.unanswered}, refused {row.rejected})"
            )
        base = ceilings.get(s)
        if s.kind == "fanout" and not s.rate and base is not None and row.server != CEILING:
            times = ratio(row.per_delivery("server"), base.per_delivery("server"))
            sized = "" if s.clients == 200 else " [target is set at 200 clients]"
            lines.append(
                f"{verdict(times is not None and times <= 4)}  {who}: CPU per delivery "
                f"{fmt(times, '.1f')}x the ceiling's (<= 4x){sized}"
            )
        if s.kind == "fanout" and s.rate:
            p99 = row.percentile_ms(0.99)
            sized = "" if (s.clients, s.rate) == (100, 20) else " [target is set at 100 @ 20/s]"
            lines.append(
                f"{verdict(p99 is not None and p99 < 25)}  {who}: p99 {fmt(p99, '.1f')} ms "
                f"(< 25 ms){sized}"
            )
        if s.kind == "idle":
            kb = row.rss_per_conn / 1024 if row.rss_per_conn is not None else None
            sized = "" if s.clients == 1000 else " [target is set at 1000]"
            lines.append(
                f"{verdict(row.connected == row.attempted)}  {who}: "
                f"{row.connected}/{row.attempted} got in at once{sized}"
            )
            lines.append(
                f"{verdict(kb is not None and kb <= 40)}  {who}: {fmt(kb, '.1f')} KB "
                f"per idle connection (<= 40 KB){sized}"
            )
    return lines


# ------------------------------------------------------------------ command line
def scenarios_from(args: argparse.Namespace) -> list[Scenario]:
    """The preset's scenarios, or the ones the options ask for."""
    window = args.window or 10
    if args.full:
        return [
            Scenario("fanout", 100, 500, 20.0, window),
            Scenario("fanout", 200, 500, 0.0, window),
            Scenario("idle", 1000),
            Scenario("burst", 100, args.burst_messages or 10, senders=20),
        ]
    if args.quick:
        return [
            Scenario("fanout", 20, 100, 20.0, window),
            Scenario("fanout", 20, 200, 0.0, window),
            Scenario("idle", 100),
            Scenario("burst", 20, args.burst_messages or 5, senders=5),
        ]
    fanout_asked = any(v is not None for v in (args.clients, args.messages, args.rate, args.window))
    out: list[Scenario] = []
    if fanout_asked or not (args.idle or args.burst_senders):
        out.append(
            Scenario(
                "fanout",
                args.clients or 100,
                500 if args.messages is None else args.messages,
                20.0 if args.rate is None else args.rate,
                window,
            )
        )
    if args.idle:
        out.append(Scenario("idle", args.idle))
    if args.burst_senders:
        out.append(
            Scenario(
                "burst", args.burst_receivers, args.burst_messages or 10, senders=args.burst_senders
            )
        )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description="Fan-out benchmark of the /ws/ gateway against a websockets ceiling.",
        epilog="See bench/README.md for the columns and the targets.",
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="small sizes of every scenario")
    preset.add_argument("--full", action="store_true", help="the four target scenarios")
    parser.add_argument("--clients", type=int, help="fan-out receivers (default 100)")
    parser.add_argument("--messages", type=int, help="fan-out messages (default 500)")
    parser.add_argument("--rate", type=float, help="messages/s; 0 = window-paced (default 20)")
    parser.add_argument("--window", type=int, help="unacknowledged messages at rate 0 (default 10)")
    parser.add_argument("--idle", type=int, default=0, metavar="N", help="N idle sockets at once")
    parser.add_argument("--burst-senders", type=int, default=0, metavar="S")
    parser.add_argument("--burst-messages", type=int, metavar="K", help="per sender (default 10)")
    parser.add_argument("--burst-receivers", type=int, default=100, metavar="N")
    parser.add_argument(
        "--server",
        default="daphne",
        help="daphne, uvicorn or both (comma-separated); the ceiling always runs",
    )
    parser.add_argument(
        "--uvicorn-ws",
        default="websockets",
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
        help="SWITCHBOARD_WS_RATE for the Django servers (default: the server's own)",
    )
    parser.add_argument("--ws-burst", type=float, help="SWITCHBOARD_WS_BURST likewise")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args(argv)
    sizes = [args.clients, args.messages, args.window, args.idle, args.burst_senders]
    if any(v is not None and v < 0 for v in sizes) or (args.rate or 0) < 0:
        parser.error("sizes and rates must not be negative")
    if args.clients == 0 or args.window == 0:
        parser.error("--clients and --window must be at least 1")
    return args


def chosen_servers(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(servers to run, notes about the ones skipped)."""
    if args.only_ceiling:
        return [CEILING], []
    wanted = [s.strip() for s in args.server.replace("both", ",".join(SERVERS)).split(",")]
    notes: list[str] = []
    servers = [CEILING]
    for name in wanted:
        if name not in SERVERS:
            raise SystemExit(f"unknown --server {name!r}: choose from {', '.join(SERVERS)}")
        if name == "uvicorn" and not uvicorn_installed():
            notes.append(
                "uvicorn is not installed in this virtualenv: skipped "
                "(.venv/bin/pip install 'uvicorn[standard]' to include it)"
            )
            continue
        if name not in servers:
            servers.append(name)
    return servers, notes


async def run_all(
    servers: list[str],
    scenarios: list[Scenario],
    environment: Environment,
    opts: Options,
    pin: bool,
) -> tuple[list[Row], list[LogReport]]:
    """Every scenario on every server, in that order, so servers alternate on a warm machine."""
    rows: list[Row] = []
    logs: list[LogReport] = []
    for scenario in scenarios:
        for kind in servers:
            other = await machine_quiet(opts.quiet_wait)
            if other > MACHINE_QUIET:
                progress(kind, scenario, f"the machine is busy ({other:.0%} of a core) anyway")
            progress(kind, scenario, "starting")
            try:
                row, found = await run_one(kind, scenario, environment, opts, pin)
            except (RuntimeError, TimeoutError) as error:
                row, found = Row(server=kind, scenario=scenario, failure=str(error)[:2000]), []
            rows.append(row)
            logs.extend(found)
    return rows, logs


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios on the ceiling and the chosen servers; print the tables."""
    args = parse_args(argv)
    stop_on_signals()
    scenarios = scenarios_from(args)
    servers, notes = chosen_servers(args)
    pin = can_pin()
    if pin:
        os.sched_setaffinity(0, {LOADGEN_CORE})
    else:
        notes.append("fewer than 2 usable cores: servers and load generator are not pinned")
    opts = from_args(Options, args)
    overrides = {
        name: f"{value:g}"
        for name, value in (
            ("SWITCHBOARD_WS_RATE", args.ws_rate),
            ("SWITCHBOARD_WS_BURST", args.ws_burst),
        )
        if value is not None
    }
    # Every simulated client comes from 127.0.0.1, so the per-address cap on anonymous
    # sockets (a defence against one host opening thousands) would refuse most of them, and
    # the posting rate (one budget per address) would refuse most posts. Posts are still
    # counted against the rate (its cost is measured): only its limit is lifted.
    overrides["SWITCHBOARD_WS_MAX_PER_ADDRESS"] = "0"
    overrides["CHAT_POST_RATE"] = "100000000/min"
    if overrides:
        notes.append(
            "the Django servers ran with "
            + " ".join(f"{k}={v}" for k, v in overrides.items())
            + " (not the defaults)"
        )
    root = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    rows: list[Row] = []
    logs: list[LogReport] = []
    interrupted = False
    try:
        environment = Environment.prepare(root, django=servers != [CEILING])
        environment.env.update(overrides)
        rows, logs = asyncio.run(
            asyncio.wait_for(run_all(servers, scenarios, environment, opts, pin), args.max_seconds)
        )
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: every server was stopped", file=sys.stderr)
    except TimeoutError:
        print(f"stopped after --max-seconds {args.max_seconds:g}", file=sys.stderr)
    finally:
        report(rows, logs, notes, pin)
        keep_or_remove(root, args.keep or bool(logs))
    return 130 if interrupted else (1 if any(r.failure for r in rows) else 0)


def report(rows: list[Row], logs: list[LogReport], notes: list[str], pin: bool) -> None:
    """Print the result table, the ratios, the targets, notes and server log excerpts."""
    if not rows:
        return
    where = f"servers on core {SERVER_CORE}, load generator on core {LOADGEN_CORE}"
    print(
        f"\nFan-out benchmark ({where if pin else 'not pinned'}; python {sys.version.split()[0]})"
    )
    print(table(HEADERS, [cells(r) for r in rows]))
    ratios = ratio_rows(rows)
    if ratios:
        print("\nServer / ceiling (same scenario; lower is better, 1.0 = as good as the ceiling)")
        print(
            table(
                ["server", "scenario", "cpu/dlv", "cpu+redis/dlv", "p50", "p99", "RSS/conn"], ratios
            )
        )
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
