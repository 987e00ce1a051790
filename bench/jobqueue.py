"""Jobs benchmark: enqueue rate, enqueue-to-socket latency, countdown accuracy, progress events."""

# Run `.venv/bin/python -m bench.jobqueue --quick`; bench/README.md says what each number means.
# Everything it starts (Redis, the ASGI server, one Celery worker) listens on loopback and is
# stopped at the end, on Ctrl-C and on SIGTERM.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException

from bench.probe import MACHINE_QUIET, CpuProbe, Usage, machine_quiet
from bench.report import counts, fmt, percent, percentile, print_logs, ratio, table, verdict
from bench.rest import ERRORS, Rest
from bench.stack import (
    LOADGEN_CORE,
    SERVER_CORE,
    UVICORN_WS,
    Environment,
    LogReport,
    Server,
    can_pin,
    celery_worker,
    died,
    from_args,
    keep_or_remove,
    log,
    print_failure,
    redis_ps,
    scan_log,
    server_command,
    server_cores,
    stop_on_signals,
    wait_ready,
)
from bench.ws import ws_connect
from config.redis_server import free_port

KIND = "demo.sleep"
WAITING = ("scheduled", "queued")
FINAL = ("succeeded", "failed", "cancelled")
STATUS_RANK = {"scheduled": 0, "queued": 1, "running": 2, "succeeded": 3, "failed": 3}
# The gateway allows 100 subscriptions per socket; stay under it with room for jobs:mine.
SUBSCRIPTIONS_PER_SOCKET = 90
# The socket limit is per client frame; subscribing to many jobs at once is a burst of them.
# The enqueue rate limit and the cap on unfinished jobs per user would refuse the bench's
# one user most of its jobs: lifted, and said so in the report.
WS_OVERRIDES = {
    "SWITCHBOARD_WS_RATE": "10000",
    "SWITCHBOARD_WS_BURST": "10000",
    "JOBS_ENQUEUE_RATE": "100000/min",
    "JOBS_MAX_ACTIVE_PER_USER": "0",
}
# After the last final state, listen this long for frames that should not come (after_final).
AFTER_FINAL_GRACE = 0.5
TARGET_FIRST_EVENT_P50_MS = 50.0
TARGET_COUNTDOWN_P99_MS = 100.0
CREATE_USER = (
    "from django.contrib.auth.models import User\n"
    "from rest_framework.authtoken.models import Token\n"
    "user = User.objects.create_user('bench')\n"
    "print(Token.objects.create(user=user).key)\n"
)


def parse_time(text: Any) -> datetime | None:
    """A timestamp from the API (ISO 8601 with offset), or None."""
    return datetime.fromisoformat(text) if isinstance(text, str) else None


# ------------------------------------------------------------------ REST, from threads
@dataclass
class Posted:
    """One enqueue: when the POST went out and came back, and what it said."""

    index: int
    sent_ns: int = 0
    done_ns: int = 0
    http_status: int = 0
    job_id: str = ""
    job_status: str = ""  # the status the job was created with
    error: str = ""


def run_clients(
    work: Callable[[int], None],
    count: int,
    rest: Rest,
    concurrency: int,
    stop: threading.Event,
    deadline: float,
) -> None:
    """Call `work(i)` for i in 0..count-1 from `concurrency` threads; stops on `stop`."""
    indices = itertools.count()
    lock = threading.Lock()

    def client() -> None:
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                with lock:
                    index = next(indices)
                if index >= count:
                    return
                work(index)
        finally:
            rest.close()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="http") as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()


def enqueue_all(
    rest: Rest,
    bodies: list[dict[str, Any]],
    concurrency: int,
    stop: threading.Event,
    deadline: float,
) -> list[Posted]:
    """POST every body to /api/jobs/ from `concurrency` clients; one record per body."""
    posted = [Posted(i) for i in range(len(bodies))]

    def one(index: int) -> None:
        record = posted[index]
        record.sent_ns = time.perf_counter_ns()
        try:
            status, body = rest.call("POST", "/api/jobs/", bodies[index])
        except ERRORS as error:
            record.error = type(error).__name__
            return
        finally:
            record.done_ns = time.perf_counter_ns()
        record.http_status = status
        if status == 202 and isinstance(body, dict):
            record.job_id, record.job_status = str(body["id"]), str(body["status"])
        else:
            code = body.get("code") if isinstance(body, dict) else body
            record.error = f"http {status} {code}"

    run_clients(one, len(bodies), rest, concurrency, stop, deadline)
    return posted


def fetch_all(
    rest: Rest, job_ids: list[str], concurrency: int, stop: threading.Event, deadline: float
) -> dict[str, dict[str, Any]]:
    """GET /api/jobs/<id>/ for every id; the states that came back."""
    states: dict[str, dict[str, Any]] = {}

    def one(index: int) -> None:
        with contextlib.suppress(*ERRORS):
            status, body = rest.call("GET", f"/api/jobs/{job_ids[index]}/")
            if status == 200 and isinstance(body, dict):
                states[job_ids[index]] = body

    run_clients(one, len(job_ids), rest, concurrency, stop, deadline)
    return states


# ------------------------------------------------------------------ the sockets
@dataclass
class Frame:
    """A job frame as one socket received it."""

    recv_ns: int  # perf_counter_ns, comparable with Posted.sent_ns
    wall: float  # time.time(), comparable with the server's timestamps
    kind: str  # "job.update" or "job.log"
    number: int  # job.update: the job's seq; job.log: the line number
    status: str = ""
    current: int = 0
    total: int = 0
    log_lines: int = 0
    created_at: str | None = None
    finished_at: str | None = None


class JobSocket:
    """One authenticated `/ws/` socket that records every job frame it gets, by job id."""

    def __init__(self, name: str, url: str, token: str) -> None:
        self.name = name
        self.url = url
        self.token = token
        self.ws: ClientConnection | None = None
        self.frames: dict[str, list[Frame]] = defaultdict(list)
        self.finals: set[str] = set()  # jobs whose final state arrived
        self.errors: Counter[str] = Counter()
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.refs = itertools.count(1)
        self.reader: asyncio.Task[None] | None = None
        self.closed = False

    async def open(self, within: float) -> None:
        """Connect with the token, read `hello`, start reading frames."""
        self.ws = await ws_connect(self.url, within, {"Authorization": f"Token {self.token}"})
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), within))
        if hello.get("type") != "hello" or not hello.get("user"):
            raise RuntimeError(f"{self.name}: expected an authenticated hello, got {hello}")
        self.reader = asyncio.create_task(self._read(), name=f"socket-{self.name}")

    async def subscribe(self, channel: str, within: float) -> dict[str, Any]:
        """Subscribe; the reply (`subscribed` or `error`)."""
        assert self.ws is not None
        ref = next(self.refs)
        reply = self.replies[ref] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"type": "subscribe", "channel": channel, "ref": ref}))
        try:
            return await asyncio.wait_for(reply, within)
        finally:
            self.replies.pop(ref, None)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for data in self.ws:
                recv_ns, wall = time.perf_counter_ns(), time.time()
                try:
                    self._record(json.loads(data), recv_ns, wall)
                except (ValueError, KeyError, TypeError):
                    self.errors[f"{self.name}:unreadable_frame"] += 1
        except ConnectionClosed:
            pass
        finally:
            self.closed = True

    def _record(self, frame: dict[str, Any], recv_ns: int, wall: float) -> None:
        """File a job frame under its job, or hand a reply to its `subscribe` call."""
        kind = frame.get("type")
        if kind == "job.update":
            job = frame["job"]
            progress = job.get("progress") or {}
            if job["status"] in FINAL:
                self.finals.add(str(job["id"]))
            self.frames[str(job["id"])].append(
                Frame(
                    recv_ns,
                    wall,
                    kind,
                    int(job["seq"]),
                    str(job["status"]),
                    int(progress.get("current", 0)),
                    int(progress.get("total", 0)),
                    int(job.get("log_lines", 0)),
                    job.get("created_at"),
                    job.get("finished_at"),
                )
            )
        elif kind == "job.log":
            self.frames[str(frame["job_id"])].append(
                Frame(recv_ns, wall, kind, int(frame["number"]))
            )
        elif isinstance(frame.get("ref"), int) and frame["ref"] in self.replies:
            future = self.replies[frame["ref"]]
            if not future.done():
                future.set_result(frame)
        elif kind == "error":
            self.errors[f"{self.name}:{frame.get('code')}"] += 1

    async def close(self) -> None:
        """Stop reading and close the socket (closing handshake, at most 2 s)."""
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()


async def wait_until(predicate: Callable[[], bool], within: float) -> bool:
    """Poll `predicate` every 20 ms for up to `within` s; its last answer."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def final_seen(sock: JobSocket, job_ids: Iterable[str]) -> Callable[[], bool]:
    """A predicate: every job in `job_ids` has a final-status update on `sock`."""
    ids = set(job_ids)
    return lambda: ids <= sock.finals


# ------------------------------------------------------------------ checking a stream
@dataclass
class Check:
    """What one socket showed of a set of jobs; every count is summed over the jobs."""

    label: str
    jobs: int = 0
    frames: int = 0
    updates: int = 0
    logs: int = 0
    lost_status: int = 0  # status changes (creation, running, final) never seen
    lost_final: int = 0  # jobs whose final state never arrived
    wrong_final: int = 0  # final state not `succeeded` with progress steps/steps
    status_back: int = 0  # a status earlier than one already seen
    seq_back: int = 0  # an update whose seq was not above the one before
    seq_gaps: int = 0  # seq numbers skipped between updates (intermediate states not seen)
    lost_logs: int = 0
    dup_logs: int = 0
    after_final: int = 0  # frames of a job after its final state
    late: int = 0  # job:<id> subscribed after the job had started: not checkable

    @property
    def lost(self) -> int:
        """Events the owner should have seen and did not."""
        return self.lost_status + self.lost_final + self.lost_logs

    @property
    def clean(self) -> bool:
        """Nothing lost, repeated, reordered or late."""
        return not (
            self.lost
            or self.wrong_final
            or self.status_back
            or self.seq_back
            or self.dup_logs
            or self.after_final
            or self.late
        )


def check_stream(
    label: str,
    received: Mapping[str, list[Frame]],
    created: dict[str, str],
    steps: dict[str, int],
    *,
    logs: bool,
    snapshot: bool,
) -> Check:
    """Judge the frames `received` (by job id) of the jobs in `created` (id -> first status)."""
    # With `snapshot` the stream starts with the subscription's snapshot (job:<id>), which must
    # still show the job waiting; with `logs` the log lines 1..steps must each arrive once.
    check = Check(label, jobs=len(created))
    for job_id, first_status in created.items():
        frames = received.get(job_id, [])
        updates = [f for f in frames if f.kind == "job.update"]
        check.frames += len(frames)
        check.updates += len(updates)
        check.logs += len(frames) - len(updates)
        if snapshot and updates and (updates[0].status not in WAITING or updates[0].log_lines):
            check.late += 1
            continue
        statuses: list[str] = []
        for update in updates:
            if not statuses or statuses[-1] != update.status:
                statuses.append(update.status)
        expected = [first_status, "running", "succeeded"]
        check.lost_status += sum(1 for s in expected if s not in statuses)
        ranks = [STATUS_RANK.get(s, 9) for s in statuses]
        check.status_back += sum(1 for a, b in itertools.pairwise(ranks) if b < a)
        for before, after in itertools.pairwise(updates):
            if after.number <= before.number:
                check.seq_back += 1
            else:
                check.seq_gaps += after.number - before.number - 1
        final_at = next(
            (i for i, f in enumerate(frames) if f.kind == "job.update" and f.status in FINAL), None
        )
        if final_at is None:
            check.lost_final += 1
        else:
            final = frames[final_at]
            total = steps[job_id]
            if final.status != "succeeded" or (final.current, final.total) != (total, total):
                check.wrong_final += 1
            check.after_final += len(frames) - final_at - 1
        if logs:
            numbers = Counter(f.number for f in frames if f.kind == "job.log")
            check.dup_logs += sum(n - 1 for n in numbers.values())
            check.dup_logs += sum(n for k, n in numbers.items() if not 1 <= k <= steps[job_id])
            check.lost_logs += sum(1 for k in range(1, steps[job_id] + 1) if k not in numbers)
    return check


# ------------------------------------------------------------------ measuring
@dataclass
class PhaseUsage:
    """CPU of the server, the worker, Redis and the load generator over one phase."""

    phase: str
    jobs: int
    cpu: Usage


@dataclass
class Results:
    """Everything the phases measured, for the report."""

    posted: list[Posted] = field(default_factory=list)
    first_event_ms: list[float] = field(default_factory=list)
    after_response_ms: list[float] = field(default_factory=list)  # negative: event came first
    after_created_ms: list[float] = field(default_factory=list)
    running_ms: list[float] = field(default_factory=list)
    final_ms: list[float] = field(default_factory=list)
    enqueue_seconds: float | None = None
    no_event: int = 0
    countdown_posted: list[Posted] = field(default_factory=list)
    start_delay_ms: list[float] = field(default_factory=list)
    countdown_unread: int = 0
    countdown_not_run: int = 0
    progress_posted: list[Posted] = field(default_factory=list)
    events: int = 0
    events_seconds: float | None = None
    owner_events: int = 0
    final_lag_ms: list[float] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    usage: list[PhaseUsage] = field(default_factory=list)
    socket_errors: Counter[str] = field(default_factory=Counter)
    log_start: dict[str, int] = field(default_factory=dict)  # log bytes written before ready
    failures: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """The sizes and knobs of one run."""

    jobs: int
    concurrency: int
    countdown: float
    progress_jobs: int
    steps: int
    progress_delay: float
    phase_timeout: float
    quiet_wait: float


def job_body(steps: int, countdown: float) -> dict[str, Any]:
    """The POST body of one demo.sleep job that does not sleep."""
    return {"kind": KIND, "params": {"steps": steps, "max_seconds": 0}, "countdown": countdown}


def accepted(posted: list[Posted]) -> list[Posted]:
    """The enqueues the server took (202 with a job id)."""
    return [p for p in posted if p.job_id]


async def enqueue(
    api: Rest, bodies: list[dict[str, Any]], plan: Plan, stop: threading.Event
) -> list[Posted]:
    """`enqueue_all` in a thread, so this loop keeps reading the sockets meanwhile."""
    deadline = time.monotonic() + plan.phase_timeout
    return await asyncio.to_thread(enqueue_all, api, bodies, plan.concurrency, stop, deadline)


async def phase_enqueue(
    api: Rest,
    owner: JobSocket,
    plan: Plan,
    probe: CpuProbe,
    results: Results,
    stop: threading.Event,
) -> None:
    """K jobs due at once from C clients: requests/s, HTTP latency, POST-to-socket latencies."""
    log(f"enqueue: {plan.jobs} jobs from {plan.concurrency} clients")
    probe.start()
    posted = await enqueue(api, [job_body(1, 0) for _ in range(plan.jobs)], plan, stop)
    results.posted = posted
    ok = accepted(posted)
    if ok:
        first = min(p.sent_ns for p in posted if p.sent_ns)
        last = max(p.done_ns for p in posted)
        results.enqueue_seconds = (last - first) / 1e9
    if not await wait_until(final_seen(owner, (p.job_id for p in ok)), plan.phase_timeout):
        results.failures.append("enqueue: not every job reached a final state in time")
    results.usage.append(PhaseUsage("enqueue", len(ok), probe.stop()))
    for record in ok:
        updates = [f for f in owner.frames.get(record.job_id, []) if f.kind == "job.update"]
        if not updates:
            results.no_event += 1
            continue
        results.first_event_ms.append((updates[0].recv_ns - record.sent_ns) / 1e6)
        results.after_response_ms.append((updates[0].recv_ns - record.done_ns) / 1e6)
        created_at = parse_time(updates[0].created_at)
        if created_at is not None:
            results.after_created_ms.append((updates[0].wall - created_at.timestamp()) * 1000)
        running = next((f for f in updates if f.status == "running"), None)
        if running is not None:
            results.running_ms.append((running.recv_ns - record.sent_ns) / 1e6)
        final = next((f for f in updates if f.status in FINAL), None)
        if final is not None:
            results.final_ms.append((final.recv_ns - record.sent_ns) / 1e6)
    created = {p.job_id: p.job_status for p in ok}
    results.checks.append(
        check_stream(
            "enqueue     jobs:mine",
            owner.frames,
            created,
            dict.fromkeys(created, 1),
            logs=False,
            snapshot=False,
        )
    )


async def phase_countdown(
    api: Rest,
    owner: JobSocket,
    plan: Plan,
    probe: CpuProbe,
    results: Results,
    stop: threading.Event,
) -> None:
    """K jobs with countdown D + i*10 ms: started_at - run_at from the final state over REST."""
    log(f"countdown: {plan.jobs} jobs, countdown {plan.countdown:g} s + i*10 ms")
    probe.start()
    bodies = [job_body(1, round(plan.countdown + i * 0.01, 3)) for i in range(plan.jobs)]
    posted = await enqueue(api, bodies, plan, stop)
    results.countdown_posted = posted
    ok = accepted(posted)
    spread = plan.countdown + plan.jobs * 0.01
    if not await wait_until(final_seen(owner, (p.job_id for p in ok)), spread + plan.phase_timeout):
        results.failures.append("countdown: not every job reached a final state in time")
    results.usage.append(PhaseUsage("countdown", len(ok), probe.stop()))
    ids = [p.job_id for p in ok]
    deadline = time.monotonic() + plan.phase_timeout
    states = await asyncio.to_thread(fetch_all, api, ids, plan.concurrency, stop, deadline)
    results.countdown_unread = len(ids) - len(states)
    for state in states.values():
        run_at, started = parse_time(state.get("run_at")), parse_time(state.get("started_at"))
        if run_at is None or started is None:
            results.countdown_not_run += 1
            continue
        results.start_delay_ms.append((started - run_at).total_seconds() * 1000)
    created = {p.job_id: p.job_status for p in ok}
    results.checks.append(
        check_stream(
            "countdown   jobs:mine",
            owner.frames,
            created,
            dict.fromkeys(created, 1),
            logs=False,
            snapshot=False,
        )
    )


async def phase_progress(
    api: Rest,
    owner: JobSocket,
    url: str,
    token: str,
    plan: Plan,
    probe: CpuProbe,
    results: Results,
    stop: threading.Event,
) -> None:
    """J jobs reporting as fast as they can, each followed on `job:<id>`: events/s, nothing lost."""
    # The jobs get a countdown so that every `job:<id>` subscription is in place (its snapshot
    # still waiting, no log line yet) before the job starts: a subscription made later gets
    # the lines written before it over REST, not on the socket. They then start at about once.
    count, steps = plan.progress_jobs, plan.steps
    log(f"progress: {count} jobs x {steps} steps, starting in {plan.progress_delay:g} s")
    sockets = [
        JobSocket(f"events{i}", url, token)
        for i in range(math.ceil(count / SUBSCRIPTIONS_PER_SOCKET))
    ]
    try:
        for sock in sockets:
            await sock.open(10.0)
        posted = await enqueue(
            api, [job_body(steps, plan.progress_delay) for _ in range(count)], plan, stop
        )
        results.progress_posted = posted
        ok = accepted(posted)
        by_socket = {p.job_id: sockets[i // SUBSCRIPTIONS_PER_SOCKET] for i, p in enumerate(ok)}
        replies = await asyncio.gather(
            *(sock.subscribe(f"job:{job_id}", 10.0) for job_id, sock in by_socket.items())
        )
        refused = [r for r in replies if r.get("type") != "subscribed"]
        if refused:
            results.failures.append(f"progress: {len(refused)} subscriptions refused: {refused[0]}")
        probe.start()
        everyone = list(by_socket)
        deadline = plan.progress_delay + plan.phase_timeout

        def all_final() -> bool:
            return set(everyone) <= owner.finals and all(
                job_id in sock.finals for job_id, sock in by_socket.items()
            )

        if not await wait_until(all_final, deadline):
            results.failures.append("progress: not every job reached a final state in time")
        usage = PhaseUsage("progress", len(ok), probe.stop())
        # Anything still arriving now would be after a final state: give it the chance.
        await asyncio.sleep(AFTER_FINAL_GRACE)
        results.usage.append(usage)
        live: list[Frame] = []
        for job_id, sock in by_socket.items():
            live.extend(sock.frames.get(job_id, [])[1:])  # [0] is the subscription's snapshot
            final = next(
                (
                    f
                    for f in sock.frames.get(job_id, [])
                    if f.kind == "job.update" and f.status in FINAL
                ),
                None,
            )
            finished = parse_time(final.finished_at) if final is not None else None
            if final is not None and finished is not None:
                results.final_lag_ms.append((final.wall - finished.timestamp()) * 1000)
        results.events = len(live)
        if live:
            first = min(f.recv_ns for f in live)
            last = max(f.recv_ns for f in live)
            results.events_seconds = (last - first) / 1e9
        results.owner_events = sum(len(owner.frames.get(j, [])) for j in everyone)
        created = {p.job_id: p.job_status for p in ok}
        step_counts = dict.fromkeys(created, steps)
        followed = {job_id: sock.frames.get(job_id, []) for job_id, sock in by_socket.items()}
        job_check = check_stream(
            "progress    job:<id>", followed, created, step_counts, logs=True, snapshot=True
        )
        results.checks.append(job_check)
        results.checks.append(
            check_stream(
                "progress    jobs:mine",
                owner.frames,
                created,
                step_counts,
                logs=False,
                snapshot=False,
            )
        )
        if job_check.late:
            results.failures.append(
                f"progress: {job_check.late} jobs started before their job:<id> subscription "
                "(not checkable): raise --progress-delay"
            )
    finally:
        for sock in sockets:
            results.socket_errors.update(sock.errors)
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


async def warm_up(api: Rest, owner: JobSocket, plan: Plan, stop: threading.Event) -> None:
    """A few jobs end to end, so imports, connections and the worker's pool are warm."""
    log("warming up: 3 jobs")
    warm = dataclasses.replace(plan, concurrency=3, phase_timeout=30.0)
    posted = await enqueue(api, [job_body(1, 0) for _ in range(3)], warm, stop)
    ok = accepted(posted)
    if len(ok) < 3:
        errors = ", ".join(p.error for p in posted if p.error)
        raise RuntimeError(f"warm-up: {len(ok)}/3 enqueues accepted ({errors})")
    if not await wait_until(final_seen(owner, (p.job_id for p in ok)), 30.0):
        raise RuntimeError("warm-up: the jobs did not finish within 30 s (is the worker running?)")


async def steps_allowed(api: Rest) -> int | None:
    """The most `steps` demo.sleep accepts, from /api/job-kinds/ (None: no limit found)."""
    status, kinds = await asyncio.to_thread(api.call, "GET", "/api/job-kinds/")
    if status != 200 or not isinstance(kinds, list):
        return None
    for kind in kinds:
        if kind.get("name") == KIND:
            steps = kind.get("params_schema", {}).get("properties", {}).get("steps", {})
            maximum = steps.get("maximum")
            return int(maximum) if isinstance(maximum, int | float) else None
    return None


async def measure(
    port: int,
    token: str,
    plan: Plan,
    probe: CpuProbe,
    processes: list[Server],
    results: Results,
    notes: list[str],
) -> None:
    """Readiness, warm-up, then the three phases, in that order, on one stack."""
    stop = threading.Event()
    ready = await wait_ready(port, processes, 90.0)
    # The 503s (and their ERROR lines) before the worker answered are expected: skip them.
    for proc in processes:
        results.log_start[proc.name] = proc.log_size()
    log("ready: " + ", ".join(f"{k} {v.get('detail')}" for k, v in ready["checks"].items()))
    api = Rest([port], token)
    url = f"ws://127.0.0.1:{port}/ws/"
    allowed = await steps_allowed(api)
    if allowed is not None and plan.steps > allowed:
        notes.append(
            f"asked for {plan.steps} steps per progress job, but {KIND} accepts at most "
            f"{allowed} (its params schema, jobs/kinds.py): ran {allowed}"
        )
        plan.steps = allowed
    owner = JobSocket("owner", url, token)
    try:
        await owner.open(10.0)
        reply = await owner.subscribe("jobs:mine", 10.0)
        if reply.get("type") != "subscribed":
            raise RuntimeError(f"subscribe jobs:mine: {reply}")
        await warm_up(api, owner, plan, stop)
        other = await machine_quiet(plan.quiet_wait)
        # A test suite running beside the benchmark skews every number: say so, go on anyway.
        if other > MACHINE_QUIET:
            notes.append(
                f"the machine was busy before measuring: others used {other:.0%} of a core"
            )
        await phase_enqueue(api, owner, plan, probe, results, stop)
        await phase_countdown(api, owner, plan, probe, results, stop)
        await phase_progress(api, owner, url, token, plan, probe, results, stop)
        if owner.closed:
            results.failures.append("the jobs:mine socket closed during the run")
    finally:
        # Ctrl-C or a timeout: the HTTP threads stop after their current request.
        stop.set()
        results.socket_errors.update(owner.errors)
        await owner.close()


# ------------------------------------------------------------------ report
def latency_row(
    label: str, values_ms: list[float], of: int, note: str = "", rate: str = "-"
) -> list[str]:
    """One row of the latency table: how many were measured of how many, p50, p99, max."""
    return [
        label,
        f"{len(values_ms)}/{of}",
        rate,
        fmt(percentile(values_ms, 0.5), ".1f"),
        fmt(percentile(values_ms, 0.99), ".1f"),
        fmt(max(values_ms, default=None), ".1f"),
        note,
    ]


def error_counts(posted: list[Posted]) -> list[str]:
    """`error=count` for the enqueues that failed, by error."""
    return counts(Counter(p.error for p in posted if p.error))


def latency_rows(results: Results, plan: Plan) -> list[list[str]]:
    """The latency table: one row per measured quantity."""
    posted, ok = results.posted, len(accepted(results.posted))
    http_ms = [(p.done_ns - p.sent_ns) / 1e6 for p in accepted(posted)]
    rate = ratio(float(ok), results.enqueue_seconds)
    same_clock = "server clock vs ours (same machine)"
    rows = [
        latency_row(
            "enqueue: POST /api/jobs/ -> 202",
            http_ms,
            len(posted),
            " ".join(error_counts(posted)) or f"C={plan.concurrency}",
            fmt(rate, ".1f") + " req/s" if rate else "-",
        ),
        latency_row(
            "enqueue -> first job.update (jobs:mine)",
            results.first_event_ms,
            ok,
            f"no event: {results.no_event}" if results.no_event else "",
        ),
        latency_row(
            "202 response -> first job.update",
            results.after_response_ms,
            ok,
            "negative: the event came before the response",
        ),
        latency_row("created_at -> first job.update", results.after_created_ms, ok, same_clock),
        latency_row("enqueue -> running (worker claimed it)", results.running_ms, ok),
        latency_row("enqueue -> final state (succeeded)", results.final_ms, ok),
    ]
    delays = results.start_delay_ms
    early = [d for d in delays if d < 0]
    notes = [f"early={len(early)}", f"min {fmt(min(delays, default=None), '+.1f')} ms"]
    if results.countdown_not_run:
        notes.append(f"never started={results.countdown_not_run}")
    if results.countdown_unread:
        notes.append(f"GET failed={results.countdown_unread}")
    notes += error_counts(results.countdown_posted)
    rows.append(
        latency_row(
            f"countdown {plan.countdown:g}s+i*10ms: started_at - run_at",
            delays,
            len(accepted(results.countdown_posted)),
            " ".join(notes),
        )
    )
    events_rate = ratio(float(results.events), results.events_seconds)
    pok = len(accepted(results.progress_posted))
    events = [
        f"{results.events} frames in {fmt(results.events_seconds, '.2f')} s",
        f"(+{results.owner_events} on jobs:mine)",
        *error_counts(results.progress_posted),
    ]
    rows.append(
        [
            f"progress {plan.progress_jobs}x{plan.steps} steps: events on job:<id>",
            f"{pok}/{len(results.progress_posted)} jobs",
            fmt(events_rate, ".0f") + " ev/s" if events_rate else "-",
            "-",
            "-",
            "-",
            " ".join(events),
        ]
    )
    rows.append(
        latency_row(
            "progress: finished_at -> final job.update", results.final_lag_ms, pok, same_clock
        )
    )
    return rows


LATENCY_HEADERS = ["measure", "count", "rate", "p50 ms", "p99 ms", "max ms", "notes"]
USAGE_HEADERS = [
    "phase",
    "jobs",
    "seconds",
    "srv cpu s",
    "wrk cpu s",
    "redis cpu s",
    "srv ms/job",
    "wrk ms/job",
    "srv %cpu",
    "wrk %cpu",
    "gen %cpu",
    "other %cpu",
]
# The delivery table's columns after the label: the counts of `Check`, in this order.
CHECK_COUNTS = ["jobs", "frames", "updates", "logs", "lost", "lost_status", "lost_final"]
CHECK_COUNTS += ["wrong_final", "lost_logs", "dup_logs", "status_back", "seq_back", "seq_gaps"]
CHECK_COUNTS += ["after_final", "late"]
CHECK_HEADERS = ["phase / stream", *(n.replace("_", " ") for n in CHECK_COUNTS[:-1]), "late sub"]


def usage_rows(results: Results) -> list[list[str]]:
    """The CPU table: one row per phase."""
    rows = []
    for phase in results.usage:
        u, jobs = phase.cpu, float(phase.jobs)
        server, worker, redis = u.cpu["server"], u.cpu["worker"], u.cpu["redis"]
        ms_per_job = [ratio(cpu, jobs) for cpu in (server, worker)]
        rows.append(
            [
                phase.phase,
                str(phase.jobs),
                f"{u.seconds:.2f}",
                f"{server:.2f}",
                f"{worker:.2f}",
                f"{redis:.2f}",
                *(fmt(v * 1000 if v is not None else None, ".1f") for v in ms_per_job),
                *(percent(cpu, u.seconds) for cpu in (server, worker, u.loadgen, u.other)),
            ]
        )
    return rows


def check_rows(results: Results) -> list[list[str]]:
    """The delivery table: one row per phase and stream."""
    return [[c.label, *(str(getattr(c, name)) for name in CHECK_COUNTS)] for c in results.checks]


def target_lines(results: Results) -> list[str]:
    """PASS/FAIL against the targets in bench/README.md; `----` for what was not measured."""

    skipped = "----  not measured (the run stopped before this phase):"
    all_posted = results.posted + results.countdown_posted + results.progress_posted
    refused = [p for p in all_posted if not p.job_id]
    lines = [
        f"{verdict(bool(all_posted) and not refused)}  every enqueue answered 202 "
        f"({len(all_posted) - len(refused)}/{len(all_posted)})"
    ]
    p50 = percentile(results.first_event_ms, 0.5)
    first_ok = p50 is not None and p50 < TARGET_FIRST_EVENT_P50_MS and not results.no_event
    lines.append(
        f"{verdict(first_ok)}  enqueue -> first socket event p50 {fmt(p50, '.1f')} ms "
        f"(< {TARGET_FIRST_EVENT_P50_MS:g} ms; {results.no_event} jobs without any event)"
        if results.posted
        else f"{skipped} enqueue -> first socket event"
    )
    delays = results.start_delay_ms
    due = len(accepted(results.countdown_posted))
    p99 = percentile(delays, 0.99)
    early = sum(1 for d in delays if d < 0)
    counted = bool(delays) and len(delays) == due
    if results.countdown_posted:
        lines.append(
            f"{verdict(counted and p99 is not None and p99 < TARGET_COUNTDOWN_P99_MS)}  start "
            f"after the countdown p99 {fmt(p99, '.1f')} ms (< {TARGET_COUNTDOWN_P99_MS:g} ms; "
            f"{len(delays)}/{due} jobs started)"
        )
        lines.append(f"{verdict(counted and early == 0)}  never early ({early} started early)")
    else:
        lines.append(f"{skipped} countdown accuracy")
    checks = results.checks
    lost = sum(c.lost for c in checks)
    gaps = sum(c.seq_gaps for c in checks)
    bad = [" ".join(c.label.split()) for c in checks if not c.clean]
    if checks:
        partial = "" if len(checks) == 4 else f" [{len(checks)} of 4 streams measured]"
        lines.append(
            f"{verdict(not bad)}  no event lost for a subscribed owner: every status change, "
            f"the final state always, log lines 1..N once each (lost {lost}"
            + (f"; problems in {', '.join(bad)}" if bad else "")
            + f"){partial}"
            + (
                f"; {gaps} intermediate updates skipped (seq gaps, superseded by later states)"
                if gaps
                else ""
            )
        )
    else:
        lines.append(f"{skipped} no event lost")
    for failure in results.failures:
        lines.append(f"FAIL  {failure}")
    return lines


def report(
    results: Results,
    server: str,
    plan: Plan,
    where: str,
    notes: list[str],
    logs: list[LogReport],
) -> None:
    """Print the three tables, the targets, notes and log excerpts."""
    print(f"\nJobs benchmark ({server}; {where}; python {sys.version.split()[0]})")
    print(table(LATENCY_HEADERS, latency_rows(results, plan)))
    if results.usage:
        print("\nCPU per phase (windows: see bench/README.md)")
        print(table(USAGE_HEADERS, usage_rows(results)))
    if results.checks:
        print("\nDelivery to the owner's sockets (every count summed over the phase's jobs)")
        print(table(CHECK_HEADERS, check_rows(results)))
    print("\nTargets")
    print("\n".join(target_lines(results)))
    countdown = next((u for u in results.usage if u.phase == "countdown"), None)
    if countdown is not None and countdown.jobs and countdown.cpu.cpu["worker"] > 0:
        per_job = countdown.cpu.cpu["worker"] / countdown.jobs
        notes.append(
            f"countdown: the schedule starts a job every 10 ms (100/s); the worker spent "
            f"{per_job * 1000:.1f} ms of CPU per job, so one core runs about {1 / per_job:.0f} "
            "jobs/s: past that, lateness is the queue behind the worker, not the timer"
        )
    if results.socket_errors:
        errors = " ".join(counts(results.socket_errors))
        notes.append(f"error frames on the sockets: {errors}")
    for note in notes:
        print(f"note: {note}")
    print_logs(logs)


# ------------------------------------------------------------------ command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the --quick sizes filled in."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.jobqueue",
        description="Jobs benchmark: enqueue rate, socket latency, countdowns, progress events.",
        epilog="See bench/README.md for the numbers and the targets.",
    )
    parser.add_argument("--quick", action="store_true", help="30 jobs, 5 progress jobs")
    parser.add_argument("--jobs", type=int, metavar="K", help="jobs per phase (default 200)")
    parser.add_argument(
        "--concurrency", type=int, default=8, metavar="C", help="HTTP clients (default 8)"
    )
    parser.add_argument(
        "--countdown", type=float, default=2.0, metavar="D", help="seconds (default 2)"
    )
    parser.add_argument(
        "--progress-jobs", type=int, metavar="J", help="jobs reporting progress (default 20)"
    )
    parser.add_argument(
        "--steps", type=int, default=200, help="steps per progress job (default 200)"
    )
    parser.add_argument(
        "--progress-delay",
        type=float,
        default=2.0,
        metavar="S",
        help="countdown of the progress jobs: time to subscribe to each before it starts (2)",
    )
    parser.add_argument("--server", default="daphne", choices=("daphne", "uvicorn"))
    parser.add_argument(
        "--uvicorn-ws",
        default="websockets-sansio",
        choices=UVICORN_WS,
        help="uvicorn's WebSocket implementation (--ws)",
    )
    parser.add_argument(
        "--pool",
        default="threads",
        choices=("threads", "prefork"),
        help="the Celery worker's pool (default threads, as the tests run it)",
    )
    parser.add_argument("--worker-concurrency", type=int, default=4, metavar="N")
    parser.add_argument(
        "--worker-core",
        default="auto",
        help="the worker's core: a number, `any`, or `auto` (core 2 if there is one, else core "
        "1 beside the load generator)",
    )
    parser.add_argument(
        "--phase-timeout", type=float, default=120.0, help="cap on each phase's waiting (s)"
    )
    parser.add_argument("--max-seconds", type=float, default=900.0, help="whole-run time cap")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before measuring, wait up to this long for other processes to go quiet",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="let the OS place every process (no core pinning)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (30 if args.quick else 200)
    args.progress_jobs = args.progress_jobs or (5 if args.quick else 20)
    if (
        min(args.jobs, args.concurrency, args.progress_jobs, args.steps, args.worker_concurrency)
        < 1
    ):
        parser.error("--jobs, --concurrency, --progress-jobs, --steps must be at least 1")
    if not (args.worker_core in ("auto", "any") or args.worker_core.isdigit()):
        parser.error("--worker-core takes a core number, `any` or `auto`")
    if args.countdown < 0 or args.progress_delay < 0:
        parser.error("--countdown and --progress-delay must not be negative")
    return args


def worker_cores(choice: str, pin: bool, everywhere: set[int]) -> set[int] | None:
    """The cores the worker may run on (None: wherever this process may)."""
    if not pin:
        return None
    if choice == "any":
        return everywhere
    if choice == "auto":
        # Its own core if there is a third one; else beside the load generator, which uses a
        # few % of a core, rather than beside the server, whose CPU it would halve.
        spare = sorted(everywhere - {SERVER_CORE, LOADGEN_CORE})
        return {spare[0] if spare else LOADGEN_CORE}
    return {int(choice)}


def placement(cores: set[int] | None, everywhere: set[int]) -> str:
    """Where the processes ran, for the report's title."""
    if cores is None:
        return "not pinned"
    worker = "any core" if cores == everywhere and len(cores) > 1 else f"core {min(cores)}"
    return (
        f"server and Redis on core {SERVER_CORE}, load generator on core {LOADGEN_CORE}, "
        f"worker on {worker}"
    )


def main(argv: list[str] | None = None) -> int:
    """Start the stack, run the phases, print the tables, stop everything."""
    args = parse_args(argv)
    stop_on_signals()
    plan = from_args(Plan, args)
    notes: list[str] = []
    everywhere = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
    pin = can_pin() and not args.no_pin
    cores = worker_cores(args.worker_core, pin, everywhere)
    if cores is not None and not cores <= everywhere:
        raise SystemExit(f"--worker-core {args.worker_core}: not a core this process may use")
    if pin:
        os.sched_setaffinity(0, {LOADGEN_CORE})
    elif not args.no_pin:
        notes.append("fewer than 2 usable cores: nothing is pinned")
    root = Path(tempfile.mkdtemp(prefix="switchboard-bench-jobs-"))
    results = Results()
    logs: list[LogReport] = []
    interrupted = False
    servers: list[Server] = []
    try:
        with contextlib.ExitStack() as stack:
            environment = Environment.prepare(root, django=False)
            env = environment.env
            env.update(WS_OVERRIDES)
            redis = stack.enter_context(environment.redis("jobs", pin))
            env["REDIS_URL"] = redis.url
            shown = ["DJANGO_SETTINGS_MODULE", "DEBUG", *WS_OVERRIDES]
            notes.append(
                "server and worker ran with "
                + " ".join(f"{k}={env[k]}" for k in shown)
                + " (the socket rate limit out of the way)"
            )
            log("migrating a fresh SQLite database, creating the user")
            environment.manage("migrate", "--noinput", "-v0")
            token = environment.manage("shell", "-c", CREATE_USER).strip().splitlines()[-1]
            port = free_port()
            logs_dir = root / "logs"
            logs_dir.mkdir()
            argv_server = server_command(args.server, port, args.uvicorn_ws)
            server = Server(
                args.server, argv_server, env, logs_dir / "server.log", port, server_cores(pin)
            )
            worker = celery_worker(
                env, logs_dir / "worker.log", args.pool, args.worker_concurrency, cores
            )
            servers = [server, worker]
            stack.enter_context(server)
            stack.enter_context(worker)
            log(
                f"{args.server} on port {port} (pid {server.ps().pid}), celery worker "
                f"--pool {args.pool} --concurrency {args.worker_concurrency} "
                f"(pid {worker.ps().pid}), redis {redis.url}; logs in {logs_dir}"
            )
            probe = CpuProbe(server=server.ps(), worker=worker.ps(), redis=redis_ps(redis))
            asyncio.run(
                asyncio.wait_for(
                    measure(port, token, plan, probe, servers, results, notes), args.max_seconds
                )
            )
            results.failures.extend(died(servers))
            log("stopping the worker, the server and Redis")
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: every process was stopped", file=sys.stderr)
    except (RuntimeError, TimeoutError, OSError, WebSocketException) as error:
        results.failures.append(print_failure(error, servers))
    finally:
        for proc in servers:
            start = results.log_start.get(proc.name, 0)
            found = scan_log(proc, "after readiness" if start else "start-up", "run", start)
            if found is not None:
                logs.append(found)
        failed = interrupted or any(line.startswith("FAIL") for line in target_lines(results))
        kept = args.keep or bool(logs) or bool(results.failures) or interrupted
    notes.append(
        f"one celery worker: --pool {args.pool} --concurrency {args.worker_concurrency}; "
        f"the progress jobs' countdown was {plan.progress_delay:g} s"
    )
    report(results, args.server, plan, placement(cores, everywhere), notes, logs)
    if results.failures and not logs:
        for proc in servers:
            print(f"\n--- last lines of {proc.log_path}\n{proc.log_tail(20)}")
    keep_or_remove(root, kept)
    return 130 if interrupted else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
