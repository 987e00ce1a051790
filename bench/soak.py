"""Soak test: clients chat and run jobs through random disconnects; nothing lost or doubled.

Run `.venv/bin/python -m bench.soak --quick` (45 s) or without options (300 clients, 5 minutes);
bench/README.md says what it checks. Everything it starts (Redis, the ASGI servers, a Celery
worker) listens on 127.0.0.1 and is stopped at the end, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import socket
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException

from bench.probe import rss_bytes
from bench.report import table
from bench.rest import ERRORS, Rest
from bench.stack import (
    Environment,
    Server,
    celery_worker,
    died,
    from_args,
    keep_or_remove,
    log,
    print_failure,
    read_log,
    redis_ps,
    server_command,
    stop_on_signals,
    wait_ready,
)
from bench.ws import ws_connect
from config.redis_server import free_port

FINAL = frozenset({"succeeded", "failed", "cancelled"})
MB = 1024 * 1024
# Memory verdict: after warm-up, a process may grow by at most the larger of these. Python's
# allocator keeps its high-water mark, which follows the peak of concurrent work (a burst of
# reconnections, a backlog in the outboxes) and measured within ~10 MB on flat runs; a leak
# tied to the traffic shows more than this over a few minutes (the report prints what a leak
# per delivery or per connection would have added).
RSS_GROWTH_MB = 30.0
RSS_GROWTH_FRACTION = 0.20
RSS_SAMPLE_SECONDS = 2.0
RSS_WINDOW = 15.0  # seconds of samples whose median is the start (after warm-up) and the end
CREATE_ACCOUNTS = """
import json, sys
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from chat.services import room_create
spec = json.loads(sys.stdin.read())
for slug in spec["rooms"]:
    room_create(slug=slug, title=slug)
tokens = {}
for name in spec["users"]:
    tokens[name] = Token.objects.create(user=User.objects.create_user(name)).key
print(json.dumps(tokens))
"""


# ------------------------------------------------------------------ the clients
@dataclass
class Plan:
    """The sizes and rates of one run."""

    clients: int
    rooms: int
    duration: float
    warmup: float
    post_every: float  # mean seconds between one client's posts
    signed_in: float  # share of clients signed in (they run jobs)
    job_every: float  # mean seconds between one signed-in client's jobs
    session: float  # mean seconds a connection lives before a random disconnect
    abort_share: float  # share of disconnects that are abrupt TCP aborts
    away_long_share: float  # share of disconnects followed by a long absence
    settle: float  # seconds to wait at the end for everything to arrive
    late_share: float  # share of clients that first connect during the first half of the run


@dataclass
class Send:
    """A chat.send this client made; retried with the same client_id until acknowledged."""

    room: str
    body: str
    attempts: int = 0
    seq: int | None = None  # from chat.sent


@dataclass
class JobTrack:
    """A job this client enqueued and what it saw of it."""

    final: str | None = None  # the final status seen on the socket
    updates: int = 0


@dataclass
class Totals:
    """Counts summed over all clients."""

    connections: int = 0
    connect_failures: int = 0
    closes: int = 0
    aborts: int = 0
    closed_by_server: Counter[str] = field(default_factory=Counter)
    resyncs: int = 0
    rest_fetched: int = 0
    live: int = 0
    replayed: int = 0
    stream_dups: int = 0  # the same seq twice on one connection's stream
    out_of_order: int = 0  # a seq not above the previous one on one connection, per room
    sends: int = 0
    send_retries: int = 0
    duplicate_acks: int = 0  # chat.sent with duplicate=true: a retry of a committed send
    rate_limited: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    jobs: int = 0
    enqueue_failures: int = 0
    job_frames: int = 0
    job_log_dups: int = 0  # the same job.log number twice on one connection
    job_disorder: int = 0  # job.update frames out of job.seq order within a subscription
    job_stale: int = 0  # a job.update older than one already received on that connection


class Soak:
    """What all clients share: the servers, the REST client, the phase flags and the totals."""

    def __init__(self, plan: Plan, names: dict[str, str], rest: Rest, rng: random.Random) -> None:
        self.plan = plan
        self.names = names  # server name by socket URL
        self.urls = list(names)
        self.rest = rest
        self.rng = rng
        self.churn = True  # random disconnects and new posts/jobs; off while settling
        self.settling = asyncio.Event()
        self.stopping = asyncio.Event()
        self.totals = Totals()


class Client:
    """One simulated SPA: rooms it follows, what it holds of each, its sends and its jobs."""

    def __init__(self, soak: Soak, index: int, rooms: list[str], token: str | None) -> None:
        self.soak = soak
        self.index = index
        self.rooms = rooms
        self.token = token
        self.rng = random.Random(soak.rng.random())  # noqa: S311 - a simulation
        self.held: dict[str, Counter[int]] = {r: Counter() for r in rooms}  # seq -> receipts
        self.ids: dict[str, dict[int, int]] = {r: {} for r in rooms}  # seq -> message id
        self.sends: dict[str, Send] = {}  # by client_id
        self.jobs: dict[str, JobTrack] = {}
        self.fetches: set[asyncio.Task[None]] = set()  # REST reads after resync_required
        self.enqueues: set[asyncio.Task[None]] = set()  # POST /api/jobs/ in flight
        self.ws: ClientConnection | None = None
        self.refs = itertools.count(1)
        self.ref_of_send: dict[int, str] = {}  # ref -> client_id, on this connection
        self.job_subs: set[str] = set()  # job ids subscribed on this connection
        self.connected = asyncio.Event()
        self.posted = 0
        self.url = ""  # the server of the current (or last) connection

    # ---- bookkeeping
    def last_seq(self, room: str) -> int:
        """The highest seq held in `room` (what a reconnection passes as `since`)."""
        held = self.held[room]
        return max(held) if held else 0

    def record(self, room: str, seq: int, message_id: int) -> None:
        self.held[room][seq] += 1
        self.ids[room].setdefault(seq, message_id)

    # ---- the connection loop
    async def run(self) -> None:
        """Connect, follow, post and enqueue; disconnect at random; until the run stops."""
        # Not all in the same instant; some join late, into rooms with a long history.
        plan = self.soak.plan
        late = self.rng.random() < plan.late_share
        await asyncio.sleep(self.rng.uniform(0, plan.duration / 2 if late else 5.0))
        failures = 0
        while not self.soak.stopping.is_set():
            try:
                await self.session()
                failures = 0
            except (OSError, WebSocketException, TimeoutError) as error:
                self.soak.totals.connect_failures += 1
                where = self.soak.names.get(self.url, self.url)
                self.soak.totals.errors[f"connect:{where}:{type(error).__name__}"] += 1
                failures += 1
                await asyncio.sleep(min(5.0, 0.2 * 2**failures) * self.rng.uniform(0.5, 1.0))
                continue
            finally:
                self.connected.clear()
                self.ws = None
            if self.soak.stopping.is_set():
                break
            away = (
                self.rng.uniform(10, 40)
                if self.rng.random() < plan.away_long_share
                else self.rng.uniform(0.1, 3.0)
            )
            # An absence is cut short when the run starts settling: every client ends connected.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.soak.settling.wait(), away)

    async def session(self) -> None:
        """One connection, from the handshake to a random (or final) disconnect."""
        totals = self.soak.totals
        url = self.url = self.rng.choice(self.soak.urls)
        headers = {"Authorization": f"Token {self.token}"} if self.token else None
        ws = await ws_connect(url, 15.0, headers)
        totals.connections += 1
        self.ws = ws
        self.ref_of_send = {}
        self.job_subs = set()
        stream: dict[str, Counter[int]] = {r: Counter() for r in self.rooms}
        last_on_stream: dict[str, int] = {}  # by room; a room's subscribed seq is kept under "="
        try:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 15.0))
            if hello.get("type") != "hello" or bool(hello.get("user")) != bool(self.token):
                raise RuntimeError(f"client {self.index}: unexpected hello {hello}")
            reader = asyncio.create_task(self.read(ws, stream, last_on_stream))
            try:
                for room in self.rooms:
                    since = self.last_seq(room)
                    await self.send(
                        {"type": "subscribe", "channel": f"room:{room}", "since": since}
                    )
                if self.token:
                    await self.send({"type": "subscribe", "channel": "jobs:mine"})
                    for job_id, track in self.jobs.items():
                        if track.final is None:
                            await self.follow_job(job_id)
                for client_id, pending in list(self.sends.items()):
                    if pending.seq is None:
                        totals.send_retries += 1
                        await self.send_chat(client_id, pending)
                self.connected.set()
                lifetime = self.rng.expovariate(1 / self.soak.plan.session)
                await self.act(reader, time.monotonic() + lifetime)
            except ConnectionClosed:
                pass  # closed under us while sending: the reader recorded why
            finally:
                self.connected.clear()
                if not reader.done():
                    await self.hang_up(ws)
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3.0)

    async def hang_up(self, ws: ClientConnection) -> None:
        """Close the connection: a closing handshake, or an abrupt TCP reset."""
        totals = self.soak.totals
        if self.soak.stopping.is_set() or self.rng.random() >= self.soak.plan.abort_share:
            totals.closes += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3.0)
            return
        totals.aborts += 1
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: close() sends RST at once, as a dropped network or killed tab would.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.transport.abort()

    async def act(self, reader: asyncio.Task[None], until: float) -> None:
        """Post and enqueue at random while the connection lives; return when it should end."""
        plan = self.soak.plan
        next_post = time.monotonic() + self.rng.expovariate(1 / plan.post_every)
        next_job = (
            time.monotonic() + self.rng.expovariate(1 / plan.job_every)
            if self.token
            else float("inf")
        )
        while not reader.done() and not self.soak.stopping.is_set():
            now = time.monotonic()
            if self.soak.churn:
                if now >= until:
                    return
                if now >= next_post:
                    next_post = now + self.rng.expovariate(1 / plan.post_every)
                    await self.post()
                if now >= next_job:
                    next_job = now + self.rng.expovariate(1 / plan.job_every)
                    task = asyncio.create_task(self.enqueue())
                    self.enqueues.add(task)
                    task.add_done_callback(self.enqueues.discard)
            else:
                # Settling: resend what was refused (rate limit) until every send is answered.
                for client_id, pending in list(self.sends.items()):
                    if pending.seq is None and client_id not in self.ref_of_send.values():
                        self.soak.totals.send_retries += 1
                        await self.send_chat(client_id, pending)
            await asyncio.sleep(0.1 if self.soak.churn else 0.5)

    async def send(self, frame: dict[str, Any]) -> int:
        assert self.ws is not None
        ref = next(self.refs)
        await self.ws.send(json.dumps({**frame, "ref": ref}))
        return ref

    async def post(self) -> None:
        self.posted += 1
        client_id = f"soak-{self.index}-{self.posted}-{uuid.uuid4().hex[:8]}"
        room = self.rng.choice(self.rooms)
        pending = self.sends[client_id] = Send(room, f"client {self.index} says {self.posted}")
        self.soak.totals.sends += 1
        await self.send_chat(client_id, pending)

    async def send_chat(self, client_id: str, pending: Send) -> None:
        pending.attempts += 1
        frame = {
            "type": "chat.send",
            "room": pending.room,
            "body": pending.body,
            "client_id": client_id,
        }
        ref = await self.send(frame)
        self.ref_of_send[ref] = client_id

    async def follow_job(self, job_id: str) -> None:
        if job_id not in self.job_subs:
            self.job_subs.add(job_id)
            await self.send({"type": "subscribe", "channel": f"job:{job_id}"})

    async def enqueue(self) -> None:
        """POST a demo.sleep job with a countdown (retried with its Idempotency-Key), follow it."""
        totals = self.soak.totals
        body = {
            "kind": "demo.sleep",
            "params": {"steps": self.rng.randint(1, 4), "max_seconds": 0.3},
            "countdown": round(self.rng.uniform(0, 5), 2),
        }
        key = uuid.uuid4().hex
        try:
            status, job = await self.soak.rest.retrying(
                "POST", "/api/jobs/", body, self.token, headers={"Idempotency-Key": key}
            )
        except (*ERRORS, ValueError) as error:
            totals.enqueue_failures += 1
            totals.errors[f"enqueue:{type(error).__name__}"] += 1
            return
        if status != 202:
            totals.enqueue_failures += 1
            totals.errors[f"enqueue:http {status}"] += 1
            return
        totals.jobs += 1
        job_id = str(job["id"])
        self.jobs.setdefault(job_id, JobTrack())
        if self.connected.is_set():
            with contextlib.suppress(ConnectionClosed):
                await self.follow_job(job_id)

    # ---- reading
    async def read(
        self,
        ws: ClientConnection,
        stream: dict[str, Counter[int]],
        last_on_stream: dict[str, int],
    ) -> None:
        """File every frame of this connection; returns when the connection closes."""
        totals = self.soak.totals
        log_numbers: dict[str, Counter[int]] = {}
        job_seqs: dict[str, list[int]] = {}  # job id -> job.seq of each update, as received
        try:
            async for data in ws:
                frame = json.loads(data)
                kind = frame.get("type")
                if kind == "chat.message":
                    room, seq = frame["room"], int(frame["seq"])
                    if room not in self.held:
                        totals.errors["chat.message:not_subscribed"] += 1
                        continue
                    stream[room][seq] += 1
                    if stream[room][seq] > 1:
                        totals.stream_dups += 1
                    elif seq < last_on_stream.get(room, 0):
                        totals.out_of_order += 1
                    last_on_stream[room] = max(seq, last_on_stream.get(room, 0))
                    self.record(room, seq, int(frame["id"]))
                    if seq <= last_on_stream.get(f"={room}", 0):
                        totals.replayed += 1
                    else:
                        totals.live += 1
                elif kind == "subscribed" and frame["channel"].startswith("room:"):
                    room = frame["channel"].removeprefix("room:")
                    last_on_stream[f"={room}"] = int(frame["seq"])
                elif kind == "chat.sent":
                    client_id = self.ref_of_send.pop(frame.get("ref"), None)
                    if client_id is None or client_id != frame.get("client_id"):
                        totals.errors["chat.sent:unexpected"] += 1
                        continue
                    self.sends[client_id].seq = int(frame["seq"])
                    totals.duplicate_acks += bool(frame.get("duplicate"))
                elif kind == "resync_required":
                    room = frame["channel"].removeprefix("room:")
                    totals.resyncs += 1
                    self.fetch(room, self.last_seq(room), int(frame["seq"]))
                elif kind == "job.update":
                    self.job_update(frame, job_seqs)
                elif kind == "job.log":
                    totals.job_frames += 1
                    numbers = log_numbers.setdefault(frame["job_id"], Counter())
                    numbers[int(frame["number"])] += 1
                    totals.job_log_dups += numbers[int(frame["number"])] > 1
                elif kind == "error":
                    code = str(frame.get("code"))
                    client_id = self.ref_of_send.pop(frame.get("ref"), None)
                    if code == "rate_limited":
                        totals.rate_limited += 1  # the send stays pending and is retried
                    else:
                        totals.errors[f"error:{code}" + (":chat.send" if client_id else "")] += 1
        except ConnectionClosed as closed:
            if closed.rcvd is not None:
                where = self.soak.names.get(self.url, self.url)
                totals.closed_by_server[f"{where}:{closed.rcvd.code}"] += 1
        finally:
            self.judge_job_order(job_seqs)

    def judge_job_order(self, job_seqs: dict[str, list[int]]) -> None:
        """Each subscription must send a job's updates in job.seq order.

        jobs:mine and job:<id> carry the same frames (both say `job:<id>`), and the two
        streams may interleave in any order: the contract lets a client drop an older one by
        job.seq. A sequence is a merge of k increasing streams exactly when its longest
        non-increasing run (not necessarily contiguous) is at most k long.
        """
        totals = self.soak.totals
        for job_id, seqs in job_seqs.items():
            streams = 1 + (job_id in self.job_subs)
            longest = longest_non_increasing(seqs)
            totals.job_disorder += max(0, longest - streams)
            totals.job_stale += sum(1 for i, s in enumerate(seqs) if s < max(seqs[: i + 1]))

    def job_update(self, frame: dict[str, Any], job_seqs: dict[str, list[int]]) -> None:
        self.soak.totals.job_frames += 1
        job = frame["job"]
        job_id, seq = str(job["id"]), int(job["seq"])
        job_seqs.setdefault(job_id, []).append(seq)
        track = self.jobs.get(job_id)
        if track is None:
            # jobs:mine before the 202 came back: file it; the 202 finds it here.
            track = self.jobs[job_id] = JobTrack()
        track.updates += 1
        if job["status"] in FINAL:
            track.final = str(job["status"])

    def fetch(self, room: str, after: int, upto: int) -> None:
        """After `resync_required`: read (after, upto] over REST; live messages follow `upto`."""

        async def run() -> None:
            try:
                for message in await self.soak.rest.history(room, after, upto):
                    self.record(room, int(message["seq"]), int(message["id"]))
                    self.soak.totals.rest_fetched += 1
            except (*ERRORS, RuntimeError, ValueError) as error:
                self.soak.totals.errors[f"resync_fetch:{type(error).__name__}"] += 1

        task = asyncio.create_task(run())
        self.fetches.add(task)
        task.add_done_callback(self.fetches.discard)

    def settled(self, last_seqs: dict[str, int]) -> bool:
        """Connected, nothing pending, every room held up to `last_seqs`, every job's end seen."""
        return (
            self.connected.is_set()
            and not self.fetches
            and not self.enqueues
            and all(s.seq is not None for s in self.sends.values())
            and all(t.final is not None for t in self.jobs.values())
            and all(self.last_seq(r) >= last_seqs.get(r, 0) for r in self.rooms)
        )


def longest_non_increasing(values: list[int]) -> int:
    """Length of the longest subsequence of `values` in which no value is above the previous."""
    best: list[int] = []
    for i, value in enumerate(values):
        best.append(1 + max((best[j] for j in range(i) if values[j] >= value), default=0))
    return max(best, default=0)


# ------------------------------------------------------------------ memory
@dataclass
class Memory:
    """RSS samples of one process: (seconds since the load started, bytes)."""

    name: str
    proc: Any
    judged: bool
    samples: list[tuple[float, int]] = field(default_factory=list)

    def window(self, start: float, end: float) -> float | None:
        values = [rss for t, rss in self.samples if start <= t <= end]
        return statistics.median(values) if values else None

    def slope(self, after: float, before: float) -> float | None:
        """Least-squares growth in bytes per second over the samples in (after, before)."""
        points = [(t, rss) for t, rss in self.samples if after <= t <= before]
        if len(points) < 3:
            return None
        ts, rs = zip(*points, strict=True)
        return statistics.linear_regression(ts, rs).slope


async def sample_memory(memories: list[Memory], started: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        now = time.monotonic() - started
        for memory in memories:
            memory.samples.append((now, rss_bytes(memory.proc)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RSS_SAMPLE_SECONDS)


# ------------------------------------------------------------------ server logs
LEVEL = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b\s*(.*)")
VARYING = re.compile(r"0x[0-9a-f]+|\d+")


def log_problems(path: Path, start: int) -> Counter[str]:
    """WARNING/ERROR lines logged after byte `start`, by message (numbers masked), with the
    exception that ended a traceback that follows one."""
    found: Counter[str] = Counter()
    lines = read_log(path, start)
    for i, line in enumerate(lines):
        match = LEVEL.search(line)
        if match is None:
            continue
        message = VARYING.sub("N", f"{match[1]} {match[2]}")[:110]
        if i + 1 < len(lines) and lines[i + 1].startswith("Traceback"):
            for after in lines[i + 2 : i + 60]:
                if after and not after.startswith((" ", "Traceback")):
                    message += f" [{after[:100]}]"
                    break
        found[message] += 1
    return found


# ------------------------------------------------------------------ the run
@dataclass
class Outcome:
    """What the final check found."""

    messages: int = 0
    rooms_checked: int = 0
    held_checks: int = 0  # (client, room) pairs checked
    lost: int = 0
    lost_pairs: int = 0
    duplicated: int = 0
    wrong_id: int = 0
    db_gaps: int = 0  # seqs missing from a room's own history
    sends_unanswered: int = 0
    sends_missing: int = 0  # acknowledged client_ids not in the database
    sends_doubled: int = 0  # client_ids stored more than once
    sends_wrong_seq: int = 0
    jobs_not_final: int = 0  # in the database
    jobs_not_seen: int = 0  # the final state never reached the client
    jobs_failed: int = 0
    examples: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    load_seconds: float = 0.0
    settle_seconds: float = 0.0
    settled: bool = False

    def note(self, text: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(text)


async def check(soak: Soak, clients: list[Client], rooms: list[str], outcome: Outcome) -> None:
    """Compare what every client holds with each room's history, sends and jobs with the DB."""
    history: dict[str, dict[int, dict[str, Any]]] = {}
    stored: Counter[str] = Counter()
    by_client_id: dict[str, dict[str, Any]] = {}
    for slug in rooms:
        messages = await soak.rest.history(slug, 0, None)
        by_seq = {int(m["seq"]): m for m in messages}
        history[slug] = by_seq
        outcome.rooms_checked += 1
        outcome.messages += len(by_seq)
        last = max(by_seq, default=0)
        gaps = last - len(by_seq)
        if gaps:
            outcome.db_gaps += gaps
            outcome.note(f"room {slug}: {gaps} seqs missing from its own history")
        for message in messages:
            if message.get("client_id"):
                stored[message["client_id"]] += 1
                by_client_id[message["client_id"]] = message
    for client in clients:
        for slug in client.rooms:
            outcome.held_checks += 1
            expected = history[slug]
            held = client.held[slug]
            lost = [s for s in expected if s not in held]
            dups = sum(n - 1 for n in held.values() if n > 1)
            extra = [s for s in held if s not in expected]
            wrong = [
                s for s, i in client.ids[slug].items() if s in expected and expected[s]["id"] != i
            ]
            outcome.lost += len(lost) + len(extra)
            outcome.lost_pairs += bool(lost)
            outcome.duplicated += dups
            outcome.wrong_id += len(wrong)
            if lost:
                outcome.note(f"client {client.index} room {slug}: lost seqs {sorted(lost)[:10]}")
            if extra:
                outcome.note(f"client {client.index} room {slug}: unknown seqs {extra[:10]}")
            if dups:
                doubled = sorted(s for s, n in held.items() if n > 1)[:10]
                outcome.note(f"client {client.index} room {slug}: seqs held twice {doubled}")
        for client_id, pending in client.sends.items():
            if pending.seq is None:
                outcome.sends_unanswered += 1
                outcome.note(f"client {client.index}: chat.send {client_id} never acknowledged")
            if stored[client_id] == 0:
                outcome.sends_missing += 1
                outcome.note(f"client {client.index}: {client_id} is not in the database")
            elif stored[client_id] > 1:
                outcome.sends_doubled += 1
                outcome.note(f"client {client.index}: {client_id} stored {stored[client_id]}x")
            elif pending.seq is not None:
                message = by_client_id[client_id]
                if message["room"] != pending.room or int(message["seq"]) != pending.seq:
                    outcome.sends_wrong_seq += 1
        for job_id, track in client.jobs.items():
            status, job = await soak.rest.retrying(
                "GET", f"/api/jobs/{job_id}/", None, client.token
            )
            if status != 200 or job["status"] not in FINAL:
                outcome.jobs_not_final += 1
                outcome.note(f"job {job_id}: HTTP {status}, {job and job.get('status')}")
            elif job["status"] != "succeeded":
                outcome.jobs_failed += 1
                outcome.note(f"job {job_id} ended {job['status']}: {job.get('error')}")
            if track.final is None:
                outcome.jobs_not_seen += 1
                outcome.note(f"client {client.index}: never saw job {job_id} end")


async def settle(soak: Soak, clients: list[Client], rooms: list[str], outcome: Outcome) -> None:
    """Stop the churn, then wait until every client holds every room's last message."""
    soak.churn = False
    soak.settling.set()
    started = time.monotonic()
    deadline = started + soak.plan.settle
    last_seqs: dict[str, int] = {}
    while time.monotonic() < deadline:
        # Read the rooms' last seq only once nothing is pending: a retried send may still post.
        pending = any(s.seq is None for c in clients for s in c.sends.values())
        if not pending or not last_seqs:
            for slug in rooms:
                status, room = await soak.rest.retrying("GET", f"/api/rooms/{slug}/")
                if status == 200:
                    last_seqs[slug] = int(room["last_seq"])
        if not pending and all(c.settled(last_seqs) for c in clients):
            outcome.settled = True
            break
        await asyncio.sleep(1.0)
    outcome.settle_seconds = time.monotonic() - started
    if not outcome.settled:
        waiting = [c.index for c in clients if not c.settled(last_seqs)]
        log(f"not settled after {soak.plan.settle:g} s: {len(waiting)} clients still waiting")


async def run(
    plan: Plan,
    ports: list[int],
    tokens: list[str],
    rooms: list[str],
    memories: list[Memory],
    processes: list[Server],
    log_start: dict[str, int],
    outcome: Outcome,
    soak_ref: list[Soak],
    clients_ref: list[Client],
    seed: int,
) -> None:
    """Readiness, the load with churn for `plan.duration`, settling, then the check."""
    for port in ports:
        await wait_ready(port, processes, 90.0)
    log("ready: every server reports database, redis, broker and worker ok")
    # The 503s (and their ERROR lines) before the worker answered are expected: skip them.
    for proc in processes:
        log_start[proc.name] = proc.log_size()
    rng = random.Random(seed)  # noqa: S311 - a simulation
    rest = Rest(ports)
    names = {p.url: p.name for p in processes if p.port}
    soak = Soak(plan, names, rest, rng)
    soak_ref.append(soak)
    signed = round(plan.clients * plan.signed_in)
    clients = [
        Client(
            soak,
            i,
            rng.sample(rooms, rng.randint(1, min(3, len(rooms)))),
            tokens[i] if i < signed else None,
        )
        for i in range(plan.clients)
    ]
    clients_ref.extend(clients)
    started = time.monotonic()
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(sample_memory(memories, started, stop_sampling))
    tasks = [asyncio.create_task(c.run(), name=f"client-{c.index}") for c in clients]
    try:
        log(f"load: {plan.clients} clients ({signed} signed in) over {len(rooms)} rooms")
        next_report = started + 30
        while (now := time.monotonic()) < started + plan.duration:
            for proc in processes:
                if not proc.running:
                    raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
            if now >= next_report:
                t = soak.totals
                log(
                    f"{now - started:.0f} s: {t.connections} connections, {t.sends} sends, "
                    f"{t.live} deliveries, {t.jobs} jobs, {t.resyncs} resyncs"
                )
                next_report += 30
            await asyncio.sleep(1.0)
        outcome.load_seconds = time.monotonic() - started
        log("settling: no more posts, jobs or disconnects; every client reconnects")
        await settle(soak, clients, rooms, outcome)
        stop_sampling.set()
        await sampler
        log("checking every client against the rooms' history")
        await check(soak, clients, rooms, outcome)
    finally:
        outcome.elapsed = time.monotonic() - started
        stop_sampling.set()
        soak.stopping.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, sampler, return_exceptions=True)
        rest.shutdown()


# ------------------------------------------------------------------ report
def memory_rows(
    memories: list[Memory], plan: Plan, outcome: Outcome, totals: Totals
) -> tuple[list[list[str]], list[str]]:
    """One row per process, and the failures among the judged ones."""
    rows: list[list[str]] = []
    failures: list[str] = []
    end_at = outcome.load_seconds
    for memory in memories:
        start = memory.window(plan.warmup, plan.warmup + RSS_WINDOW)
        end = memory.window(end_at - RSS_WINDOW, end_at)
        slope = memory.slope(plan.warmup, end_at)
        peak = max((rss for _, rss in memory.samples), default=0)
        if start is None or end is None:
            rows.append([memory.name, "-", "-", "-", "-", "-", "no samples", "-"])
            if memory.judged:
                failures.append(f"{memory.name}: no RSS samples after warm-up")
            continue
        growth = end - start
        limit = max(RSS_GROWTH_MB * MB, RSS_GROWTH_FRACTION * start)
        verdict = "-"
        if memory.judged:
            verdict = "ok" if growth <= limit else "FAIL"
            if growth > limit:
                failures.append(
                    f"{memory.name}: RSS grew {growth / MB:+.1f} MB after warm-up "
                    f"(limit {limit / MB:.0f} MB)"
                )
        rows.append(
            [
                memory.name,
                f"{start / MB:.1f}",
                f"{end / MB:.1f}",
                f"{growth / MB:+.1f}",
                f"{peak / MB:.1f}",
                "-" if slope is None else f"{slope * 60 / MB:+.2f}",
                f"{limit / MB:.0f}" if memory.judged else "(not judged)",
                verdict,
            ]
        )
    return rows, failures


def rss_over_time(memories: list[Memory], plan: Plan, outcome: Outcome) -> str:
    """RSS (MB) of each process at the start and at regular marks of the load: is it levelling?"""
    step = 60.0 if outcome.load_seconds >= 240 else 15.0
    marks = [0.0]
    while marks[-1] + step <= outcome.load_seconds:
        marks.append(marks[-1] + step)
    headers = ["RSS MB at", *(f"{m:.0f} s" for m in marks)]
    rows = []
    for memory in memories:
        cells = []
        for mark in marks:
            value = memory.window(mark - RSS_SAMPLE_SECONDS * 2, mark + RSS_SAMPLE_SECONDS * 2)
            cells.append("-" if value is None else f"{value / MB:.1f}")
        rows.append([memory.name, *cells])
    return table(headers, rows)


def write_samples(memories: list[Memory], path: Path) -> None:
    """Every RSS sample as CSV: seconds since the load started, process, bytes."""
    with path.open("w") as out:
        out.write("seconds,process,rss_bytes\n")
        for memory in memories:
            for t, rss in memory.samples:
                out.write(f"{t:.1f},{memory.name},{rss}\n")


def report(
    plan: Plan,
    outcome: Outcome,
    totals: Totals,
    memories: list[Memory],
    servers: list[str],
    notes: list[str],
    logs: dict[str, Counter[str]],
) -> list[str]:
    """Print the tables; the failures."""
    failures: list[str] = []
    print(
        f"\nSoak: {plan.clients} clients over {plan.rooms} rooms on {', '.join(servers)} + one "
        f"celery worker; load {outcome.load_seconds:.0f} s, settled in "
        f"{outcome.settle_seconds:.1f} s, {outcome.elapsed:.0f} s in all\n"
    )
    traffic = [
        ["connections (reconnects)", f"{totals.connections} ({totals.connections - plan.clients})"],
        ["disconnects: close / TCP abort", f"{totals.closes} / {totals.aborts}"],
        ["closed by the server (server:code=n)", _counts(totals.closed_by_server)],
        ["connect failures", str(totals.connect_failures)],
        ["messages in the rooms", str(outcome.messages)],
        [
            "chat.send: sent / retried / acked as duplicate",
            _slash(totals.sends, totals.send_retries, totals.duplicate_acks),
        ],
        ["chat.send refused by the rate limit (retried)", str(totals.rate_limited)],
        [
            "received: live / replayed / REST after resync",
            _slash(totals.live, totals.replayed, totals.rest_fetched),
        ],
        ["resync_required", str(totals.resyncs)],
        ["jobs enqueued", str(totals.jobs)],
        ["job frames received", str(totals.job_frames)],
    ]
    print(table(["traffic", "count"], traffic))
    checks: list[tuple[str, int, str]] = [
        (
            "lost: seqs of a followed room not held at the end",
            outcome.lost,
            f"{outcome.lost_pairs} (client, room) pairs",
        ),
        ("duplicated: a seq held more than once (all sources)", outcome.duplicated, ""),
        ("  of which twice on one connection's stream", totals.stream_dups, ""),
        ("out of order on one connection", totals.out_of_order, ""),
        ("held message id differs from the history", outcome.wrong_id, ""),
        ("seqs missing from a room's own history", outcome.db_gaps, ""),
        ("chat.send never acknowledged", outcome.sends_unanswered, ""),
        ("client_id acknowledged but not stored", outcome.sends_missing, ""),
        ("client_id stored more than once", outcome.sends_doubled, ""),
        ("chat.sent seq differs from the stored message", outcome.sends_wrong_seq, ""),
        ("POST /api/jobs/ not answered 202 (after retries)", totals.enqueue_failures, ""),
        ("jobs not final in the database", outcome.jobs_not_final, ""),
        ("jobs ended other than succeeded", outcome.jobs_failed, ""),
        ("jobs whose final state the client never saw", outcome.jobs_not_seen, ""),
        ("job.log line twice on one connection", totals.job_log_dups, ""),
        (
            "job.update out of job.seq order within one subscription",
            totals.job_disorder,
            f"{totals.job_stale} older than one already received, across the two",
        ),
    ]
    print()
    print(
        table(
            ["check", "count", "note"],
            [[name, str(n), note] for name, n, note in checks],
        )
    )
    for name, count, _ in checks:
        if count:
            failures.append(f"{name}: {count}")
    if not outcome.settled:
        failures.append(f"not settled within {plan.settle:g} s")
    rows, memory_failures = memory_rows(memories, plan, outcome, totals)
    failures.extend(memory_failures)
    print(
        f"\nRSS (MB): start = median of the {RSS_WINDOW:g} s after the {plan.warmup:g} s "
        f"warm-up, end = median of the last {RSS_WINDOW:g} s of load; slope by least squares "
        "over the samples in between"
    )
    print(table(["process", "start", "end", "growth", "peak", "MB/min", "limit", "verdict"], rows))
    print(rss_over_time(memories, plan, outcome))
    deliveries = totals.live + totals.replayed
    reconnects = max(1, totals.connections - plan.clients)
    limit_bytes = RSS_GROWTH_MB * MB
    print(
        f"a leak of {limit_bytes / max(1, deliveries):.0f} B per delivery or "
        f"{limit_bytes / reconnects / 1024:.1f} KB per reconnection would have grown a server "
        f"by {RSS_GROWTH_MB:g} MB in this run (spread over the servers, more per process)"
    )
    if totals.errors:
        print(f"\nother errors: {_counts(totals.errors)}")
    for example in outcome.examples:
        print(f"  {example}")
    for note in notes:
        print(f"note: {note}")
    for name, problems in logs.items():
        print(f"\n{name} logged after readiness (count, message with numbers masked):")
        for message, count in problems.most_common(10):
            print(f"  {count:5d}  {message}")
    summary = (
        f"{plan.clients} clients, {plan.rooms} rooms, {outcome.messages} messages, "
        f"{totals.jobs} jobs, {totals.connections - plan.clients} reconnects, "
        f"{outcome.load_seconds:.0f} s"
    )
    print(f"\nsoak: {outcome.lost} lost, {outcome.duplicated} duplicated ({summary})")
    print("soak: " + ("FAIL: " + "; ".join(failures) if failures else "PASS"))
    return failures


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counter.most_common()) or "0"


def _slash(*values: int) -> str:
    return " / ".join(str(v) for v in values)


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the --quick sizes filled in."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak test: chat and jobs with random disconnects; nothing lost or doubled.",
        epilog="See bench/README.md for what it checks.",
    )
    parser.add_argument("--quick", action="store_true", help="60 clients, 8 rooms, 45 s")
    parser.add_argument("--clients", type=int, help="clients (default 300; --quick 60)")
    parser.add_argument("--rooms", type=int, help="rooms (default 30; --quick 8)")
    parser.add_argument("--duration", type=float, help="seconds of load (default 300; --quick 45)")
    parser.add_argument(
        "--warmup", type=float, help="seconds before the RSS start (default 60; --quick 15)"
    )
    parser.add_argument(
        "--post-every", type=float, default=10.0, help="mean seconds between one client's posts"
    )
    parser.add_argument(
        "--signed-in", type=float, default=0.2, help="share of clients signed in (0.2)"
    )
    parser.add_argument(
        "--job-every",
        type=float,
        help="mean seconds between one signed-in client's jobs (default 60; --quick 20)",
    )
    parser.add_argument(
        "--session", type=float, help="mean seconds a connection lives (default 40; --quick 15)"
    )
    parser.add_argument(
        "--abort-share", type=float, default=0.4, help="share of disconnects that are TCP aborts"
    )
    parser.add_argument(
        "--away-long-share",
        type=float,
        default=0.1,
        help="share of disconnects followed by 10-40 s away (others: 0.1-3 s)",
    )
    parser.add_argument(
        "--late-share",
        type=float,
        default=0.1,
        help="share of clients that first connect during the first half of the run (0.1)",
    )
    parser.add_argument(
        "--replay-limit",
        type=int,
        default=20,
        help="SWITCHBOARD_REPLAY_LIMIT of the servers: low, so long absences get resync_required",
    )
    parser.add_argument(
        "--servers",
        default="uvicorn,daphne",
        help="comma-separated ASGI servers, one process each (default uvicorn,daphne)",
    )
    parser.add_argument("--database-url", help="instead of a fresh SQLite (it gets migrated)")
    parser.add_argument("--settle", type=float, default=90.0, help="cap on the final wait (s)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args(argv)
    args.clients = args.clients or (60 if args.quick else 300)
    args.rooms = args.rooms or (8 if args.quick else 30)
    args.duration = args.duration or (45.0 if args.quick else 300.0)
    args.warmup = args.warmup if args.warmup is not None else (15.0 if args.quick else 60.0)
    args.job_every = args.job_every or (20.0 if args.quick else 60.0)
    args.session = args.session or (15.0 if args.quick else 40.0)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not args.servers or any(s not in ("uvicorn", "daphne") for s in args.servers):
        parser.error("--servers takes uvicorn and/or daphne, comma-separated")
    if args.clients < 1 or args.rooms < 1:
        parser.error("--clients and --rooms must be at least 1")
    if args.warmup + 2 * RSS_WINDOW > args.duration:
        parser.error(f"--duration must leave {2 * RSS_WINDOW:g} s after --warmup for RSS windows")
    return args


def main(argv: list[str] | None = None) -> int:
    """Start the stack, run the clients, check, print the report, stop everything."""
    args = parse_args(argv)
    stop_on_signals()
    plan = from_args(Plan, args)
    root = Path(tempfile.mkdtemp(prefix="switchboard-soak-"))
    run_tag = f"soak{os.getpid()}"
    rooms = [f"{run_tag}-{i:02d}" for i in range(plan.rooms)]
    signed = round(plan.clients * plan.signed_in)
    outcome = Outcome()
    soak_ref: list[Soak] = []
    clients_ref: list[Client] = []
    memories: list[Memory] = []
    processes: list[Server] = []
    logs: dict[str, Counter[str]] = {}
    log_start: dict[str, int] = {}
    notes: list[str] = []
    failures: list[str] = []
    interrupted = False
    try:
        with contextlib.ExitStack() as stack:
            environment = Environment.prepare(root, django=False)
            env = environment.env
            overrides = {
                # Every client comes from 127.0.0.1: the per-address socket cap (200) would
                # refuse most of them, and the anonymous ones would share one posting budget.
                "SWITCHBOARD_WS_MAX_PER_ADDRESS": str(10 * plan.clients + 100),
                "CHAT_POST_RATE": "100000/min",
                "SWITCHBOARD_REPLAY_LIMIT": str(args.replay_limit),
            }
            env.update(overrides)
            if args.database_url:
                env["DATABASE_URL"] = args.database_url
            notes.append(
                "servers and worker ran with "
                + " ".join(f"{k}={v}" for k, v in overrides.items())
                + f"; database {env['DATABASE_URL'].split('@')[-1]}"
            )
            redis = stack.enter_context(environment.redis("soak"))
            env["REDIS_URL"] = redis.url
            log("migrating, creating the rooms and the signed-in users")
            environment.manage("migrate", "--noinput", "-v0")
            spec = {"rooms": rooms, "users": [f"{run_tag}-u{i}" for i in range(signed)]}
            output = environment.manage("shell", "-c", CREATE_ACCOUNTS, stdin=json.dumps(spec))
            created = json.loads(output.strip().splitlines()[-1])
            tokens = [created[name] for name in spec["users"]]
            logs_dir = root / "logs"
            logs_dir.mkdir()
            ports: list[int] = []
            for i, kind in enumerate(args.servers):
                port = free_port()
                argv_server = server_command(kind, port, "websockets-sansio")
                name = f"{kind}-{i}" if args.servers.count(kind) > 1 else kind
                server = Server(name, argv_server, env, logs_dir / f"{name}.log", port, None)
                processes.append(stack.enter_context(server))
                ports.append(port)
            worker = celery_worker(env, logs_dir / "worker.log", "threads", 4, None)
            processes.append(stack.enter_context(worker))
            log(
                ", ".join(
                    f"{p.name} pid {p.ps().pid}" + (f" port {p.port}" if p.port else "")
                    for p in processes
                )
                + f", redis {redis.url}; logs in {logs_dir}"
            )
            memories = [Memory(p.name, p.ps(), judged=True) for p in processes]
            memories.append(Memory("redis", redis_ps(redis), judged=False))
            asyncio.run(
                run(
                    plan,
                    ports,
                    tokens,
                    rooms,
                    memories,
                    processes,
                    log_start,
                    outcome,
                    soak_ref,
                    clients_ref,
                    args.seed,
                )
            )
            failures.extend(died(processes))
            log("stopping the worker, the servers and Redis")
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: every process was stopped", file=sys.stderr)
    except (RuntimeError, TimeoutError, OSError, WebSocketException) as error:
        failures.append(print_failure(error, processes))
    for proc in processes:
        problems = log_problems(proc.log_path, log_start.get(proc.name, 0))
        if problems:
            logs[proc.name] = problems
    totals = soak_ref[0].totals if soak_ref else Totals()
    write_samples(memories, root / "rss.csv")
    failures.extend(report(plan, outcome, totals, memories, args.servers, notes, logs))
    keep_or_remove(root, args.keep or bool(failures) or interrupted or bool(logs))
    if interrupted:
        return 130
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
