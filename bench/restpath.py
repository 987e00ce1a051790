"""REST benchmark: requests per second and latency of the API's endpoints against a bare view.

Run `.venv/bin/python -m bench.restpath --quick` (see bench/README.md). One server process
serves the app and a bare Django view (`bench/urls.py`, selected by `bench.settings`), so
both are measured in the same run; the load generator is a keep-alive HTTP/1.1 client of its
own, pinned to the other core. Everything it starts (Redis, the database, the servers)
listens on loopback and is stopped at the end, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from bench.probe import MACHINE_QUIET, CpuProbe, Usage, machine_quiet
from bench.report import fmt, percent, percentile, print_logs, ratio, table, verdict
from bench.stack import (
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
    keep_or_remove,
    log,
    parse_databases,
    parse_servers,
    redis_ps,
    scan_log,
    server_command,
    server_cores,
    stop_on_signals,
)
from config.redis_server import free_port

ROOM = "bench-rest"
USERNAME = "bench-rest"
HISTORY = 60  # messages in the room before the run: a full page of 50 and then some
JOBS = 30  # jobs of the signed-in user before the run
# The setup's jobs wait in the database (due beyond JOBS_BROKER_MAX_DELAY): no broker needed.
SETUP_COUNTDOWN = 86_000
READ_TIMEOUT = 30.0

# Whatever the load does, no limit of the app may refuse it: every request comes from one
# user on 127.0.0.1. The posts and enqueues are still counted against their rates (that
# cost is measured); only the limits are lifted.
OVERRIDES = {
    "DJANGO_SETTINGS_MODULE": "bench.settings",
    "CHAT_POST_RATE": "100000000/min",
    "JOBS_ENQUEUE_RATE": "100000000/min",
    "JOBS_MAX_ACTIVE_PER_USER": "0",
    "LOGIN_THROTTLE_RATE": "100000/min",
}

SEED = """
import json, sys
from django.contrib.auth.models import User
from chat.models import Room
from chat.services import Poster, message_post, room_ensure
from jobs.services import job_enqueue
spec = json.loads(sys.stdin.read())
user = User.objects.create_user(spec["username"], password=spec["password"])
room = room_ensure(slug=spec["room"], title=spec["room"])
poster = Poster(user=user, address="127.0.0.1")
for i in range(spec["messages"]):
    message_post(room=room, poster=poster, body=f"history message {i}")
jobs = [
    str(job_enqueue(
        owner=user,
        kind="demo.sleep",
        params={"steps": 1, "max_seconds": 0},
        countdown=spec["countdown"],
    )[0].pk)
    for _ in range(spec["jobs"])
]
print(json.dumps({"jobs": jobs}))
"""


# ------------------------------------------------------------------ endpoints
@dataclass(frozen=True)
class Endpoint:
    """One measured request: a name for the command line, what it is, how to build it."""

    name: str
    kind: str  # "bare", "read" or "write"
    method: str
    path: str
    body: Callable[[], bytes] | None = None
    shown: str = ""  # the path as printed, when it differs (`{id}` for a job's id)

    @property
    def label(self) -> str:
        """The endpoint column: `GET /api/rooms/`."""
        return f"{self.method} {self.shown or self.path}"


def endpoints(job_id: str, job_countdown: float) -> list[Endpoint]:
    """The bare view, then the reads, then the writes (which grow what the reads read)."""

    def message() -> bytes:
        return json.dumps({"body": "x" * 100, "client_id": str(uuid.uuid4())}).encode()

    def job() -> bytes:
        params = {"steps": 1, "max_seconds": 0}
        return json.dumps(
            {"kind": "demo.sleep", "params": params, "countdown": job_countdown}
        ).encode()

    return [
        Endpoint("bare", "bare", "GET", "/bench/bare/"),
        Endpoint("rooms", "read", "GET", "/api/rooms/"),
        Endpoint("room", "read", "GET", f"/api/rooms/{ROOM}/"),
        Endpoint("history", "read", "GET", f"/api/rooms/{ROOM}/messages/?limit=50"),
        Endpoint("jobs", "read", "GET", "/api/jobs/"),
        Endpoint("job", "read", "GET", f"/api/jobs/{job_id}/", shown="/api/jobs/{id}/"),
        Endpoint("post", "write", "POST", f"/api/rooms/{ROOM}/messages/", message),
        Endpoint("enqueue", "write", "POST", "/api/jobs/", job),
    ]


ENDPOINT_NAMES = ("bare", "rooms", "room", "history", "jobs", "job", "post", "enqueue")


# ------------------------------------------------------------------ the HTTP client
class ResponseError(Exception):
    """The server answered something that is not HTTP/1.1 as this client reads it."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response (status line, headers, body); (status, whether the server closes)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError) as error:
        raise ResponseError(lines[0][:80].decode(errors="replace")) from error
    length: int | None = None
    chunked = closes = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            closes = b"close" in value.lower()
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                break
            await reader.readexactly(size + 2)
    elif length is not None:
        await reader.readexactly(length)
    elif status >= 200 and status not in (204, 304):
        await reader.read()  # no length: the body ends with the connection
        closes = True
    return status, closes


@dataclass
class Stats:
    """What one endpoint's measured phase got back, over all connections."""

    latencies_ns: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    last_done: float = 0.0


@dataclass
class Client:
    """How every request of a run is sent: the server's port and the headers of a signed-in SPA."""

    port: int
    headers: dict[str, str]  # on every request (cookies or token)
    write_headers: dict[str, str]  # on writes besides (CSRF token, Origin)

    def request(self, endpoint: Endpoint) -> bytes:
        """The bytes of one request to `endpoint`."""
        body = endpoint.body() if endpoint.body is not None else b""
        headers = {
            "Host": f"127.0.0.1:{self.port}",
            "Accept": "application/json",
            **self.headers,
        }
        if endpoint.method != "GET":
            headers |= self.write_headers
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(body))
        head = f"{endpoint.method} {endpoint.path} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return head.encode("latin-1") + b"\r\n" + body


async def hammer(client: Client, endpoint: Endpoint, until: float, stats: Stats) -> None:
    """One keep-alive connection: the next request as soon as the last answer is read."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while time.perf_counter() < until:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
            assert reader is not None
            data = client.request(endpoint)
            started = time.perf_counter_ns()
            try:
                writer.write(data)
                status, closes = await asyncio.wait_for(read_response(reader), READ_TIMEOUT)
            except (OSError, EOFError, asyncio.IncompleteReadError, ResponseError) as error:
                stats.errors[type(error).__name__] += 1
                closes, status = True, 0
            except TimeoutError:
                stats.errors["timeout"] += 1
                closes, status = True, 0
            if status:
                stats.latencies_ns.append(time.perf_counter_ns() - started)
                stats.statuses[status] += 1
                stats.last_done = time.perf_counter()
            if closes:
                writer.close()
                writer = reader = None
                stats.reconnects += 1
    except OSError as error:
        stats.errors[f"connect:{type(error).__name__}"] += 1
    finally:
        if writer is not None:
            writer.close()


async def load(client: Client, endpoint: Endpoint, seconds: float, connections: int) -> Stats:
    """`connections` keep-alive connections sending to `endpoint` for `seconds`."""
    stats = Stats()
    until = time.perf_counter() + seconds
    await asyncio.gather(*(hammer(client, endpoint, until, stats) for _ in range(connections)))
    return stats


def sign_in(port: int, password: str, auth: str) -> Client:
    """Sign in as the SPA does: session cookie and CSRF token (same origin), or an API token."""
    origin = f"http://127.0.0.1:{port}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT)
    cookies: SimpleCookie = SimpleCookie()

    def call(
        method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        sent = {"Accept": "application/json", **(headers or {})}
        if cookies:
            sent["Cookie"] = "; ".join(f"{k}={m.value}" for k, m in cookies.items())
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        raw = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None

    credentials = {"username": USERNAME, "password": password}
    try:
        if auth == "token":
            token = call("POST", "/api/auth/token/", credentials)["token"]
            return Client(port, {"Authorization": f"Token {token}"}, {})
        csrf = call("GET", "/api/auth/csrf/")["csrf_token"]
        call("POST", "/api/auth/login/", credentials, {"X-CSRFToken": csrf, "Origin": origin})
        # Django rotates the CSRF token at login: the SPA asks for the new one.
        csrf = call("GET", "/api/auth/csrf/")["csrf_token"]
        cookie = "; ".join(f"{k}={m.value}" for k, m in cookies.items())
        return Client(port, {"Cookie": cookie}, {"X-CSRFToken": csrf, "Origin": origin})
    finally:
        conn.close()


# ------------------------------------------------------------------ runs and results
@dataclass
class Row:
    """One endpoint measured on one server and database."""

    server: str
    db: str
    endpoint: Endpoint
    stats: Stats = field(default_factory=Stats)
    seconds: float = 0.0
    usage: Usage | None = None
    failure: str = ""

    @property
    def done(self) -> int:
        """Requests answered in the measured phase."""
        return len(self.stats.latencies_ns)

    @property
    def rate(self) -> float | None:
        """Requests per second."""
        return ratio(float(self.done), self.seconds)

    def percentile_ms(self, fraction: float) -> float | None:
        """The latency (ms) that `fraction` of the requests did not exceed."""
        value = percentile(self.stats.latencies_ns, fraction)
        return None if value is None else value / 1e6

    def per_request(self, name: str) -> float | None:
        """CPU seconds of `server` or `redis` per answered request."""
        seconds = None if self.usage is None else self.usage.cpu.get(name)
        return None if seconds is None or not self.done else seconds / self.done

    @property
    def not_2xx(self) -> int:
        """Answers outside 200-299."""
        return sum(n for status, n in self.stats.statuses.items() if not 200 <= status < 300)


@dataclass
class Settings:
    """The run's knobs."""

    duration: float
    warmup: float
    connections: int
    auth: str
    job_countdown: float
    uvicorn_ws: str
    quiet_wait: float
    wanted: list[str]


async def wait_serving(server: Server, within: float = START_LIMIT) -> None:
    """Until the bare view answers 200; fails early if the process died."""
    deadline = time.monotonic() + within
    client = Client(server.port, {}, {})
    bare = Endpoint("bare", "bare", "GET", "/bench/bare/")
    while time.monotonic() < deadline:
        if not server.running:
            raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ResponseError):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                writer.write(client.request(bare))
                status, _ = await asyncio.wait_for(read_response(reader), 2)
            finally:
                writer.close()
            if status == 200:
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.sleep(0.3)
    raise TimeoutError(f"{server.name} did not answer on port {server.port}:\n{server.log_tail()}")


async def run_server(
    kind: str, environment: Environment, seed: dict[str, Any], opts: Settings, pin: bool
) -> tuple[list[Row], list[LogReport]]:
    """Fresh Redis and server, sign in, then each endpoint: warm-up, measured phase."""
    db = environment.db
    name = f"{kind}/{db}"
    port = free_port()
    log_path = environment.root / "logs" / f"{kind}-{db}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    chosen = [e for e in endpoints(seed["jobs"][0], opts.job_countdown) if e.name in opts.wanted]
    rows = [Row(kind, db, e) for e in chosen]
    with contextlib.ExitStack() as stack:
        env = dict(environment.env)
        private = stack.enter_context(environment.redis(f"{kind}-{port}", pin))
        env["REDIS_URL"] = private.url
        argv = server_command(kind, port, opts.uvicorn_ws)
        server = stack.enter_context(Server(name, argv, env, log_path, port, server_cores(pin)))
        await wait_serving(server)
        log(f"{name}: up on port {port}, pid {server.ps().pid}; signing in ({opts.auth})")
        client = await asyncio.to_thread(sign_in, port, seed["password"], opts.auth)
        probe = CpuProbe(server=server.ps(), redis=redis_ps(private))
        for row in rows:
            if not server.running:
                row.failure = "the server process died during the run"
                continue
            log(f"{name}: {row.endpoint.label}: warm-up {opts.warmup:g} s, {opts.duration:g} s")
            await load(client, row.endpoint, opts.warmup, opts.connections)
            probe.start()
            started = time.perf_counter()
            row.stats = await load(client, row.endpoint, opts.duration, opts.connections)
            row.usage = probe.stop()
            row.seconds = max(row.stats.last_done, started) - started
            if not row.done:
                row.failure = "no request was answered: " + (
                    ", ".join(f"{k}={v}" for k, v in row.stats.errors.items()) or "?"
                )
        log_end = log_path.stat().st_size
        log(f"{name}: stopping the server")
        server.stop()
        parts = [
            scan_log(server, name, "run", 0, log_end),
            scan_log(server, name, "shutdown", log_end),
        ]
        return rows, [p for p in parts if p is not None]
    raise AssertionError("unreachable")


def seed_database(environment: Environment) -> dict[str, Any]:
    """The signed-in user, its jobs and the room with its history; what the run needs of them."""
    password = uuid.uuid4().hex
    spec = {
        "username": USERNAME,
        "password": password,
        "room": ROOM,
        "messages": HISTORY,
        "jobs": JOBS,
        "countdown": SETUP_COUNTDOWN,
    }
    with environment.redis(f"seed-{environment.db}") as redis:
        environment.env["REDIS_URL"] = redis.url
        output = environment.manage("shell", "-c", SEED, stdin=json.dumps(spec))
    created = json.loads(output.strip().splitlines()[-1])
    return {"password": password, "jobs": created["jobs"]}


# ------------------------------------------------------------------ report
HEADERS = [
    "server",
    "db",
    "endpoint",
    "kind",
    "requests",
    "req/s",
    "% of bare",
    "p50 ms",
    "p99 ms",
    "p99 x bare",
    "cpu us/req",
    "redis us/req",
    "srv %cpu",
    "gen %cpu",
    "other %cpu",
    "non-2xx",
    "errors",
]

READ_SHARE, WRITE_SHARE, P99_TIMES = 0.50, 0.35, 3.0


def bare_of(rows: list[Row]) -> dict[tuple[str, str], Row]:
    """The bare view's row of each server and database."""
    return {(r.server, r.db): r for r in rows if r.endpoint.kind == "bare" and not r.failure}


def cells(row: Row, bare: Row | None) -> list[str]:
    """The printed columns of one row."""
    usage = row.usage
    phase = usage.seconds if usage is not None else None
    cpu, redis = row.per_request("server"), row.per_request("redis")
    share = ratio(row.rate, bare.rate) if bare is not None else None
    p99x = ratio(row.percentile_ms(0.99), bare.percentile_ms(0.99)) if bare is not None else None
    statuses = ",".join(f"{s}x{n}" for s, n in sorted(row.stats.statuses.items()) if s >= 300)
    errors = [f"{k}={v}" for k, v in sorted(row.stats.errors.items())]
    if row.stats.reconnects:
        errors.append(f"reconnects={row.stats.reconnects}")
    if statuses:
        errors.append(f"status:{statuses}")
    if row.failure:
        errors.append(f"FAILED: {row.failure}")
    return [
        row.server,
        row.db,
        row.endpoint.label,
        row.endpoint.kind,
        str(row.done),
        fmt(row.rate, ".0f"),
        fmt(share * 100 if share is not None else None, ".0f"),
        fmt(row.percentile_ms(0.5), ".2f"),
        fmt(row.percentile_ms(0.99), ".2f"),
        fmt(p99x, ".1f"),
        fmt(cpu * 1e6 if cpu is not None else None, ".0f"),
        fmt(redis * 1e6 if redis is not None else None, ".0f"),
        percent(usage.cpu.get("server") if usage is not None else None, phase),
        percent(usage.loadgen if usage is not None else None, phase),
        percent(usage.other if usage is not None else None, phase),
        str(row.not_2xx),
        " ".join(errors),
    ]


def target_lines(rows: list[Row]) -> list[str]:
    """Each endpoint against the bare view of the same server and database."""
    lines: list[str] = []
    bares = bare_of(rows)
    for row in rows:
        who = f"{row.server:8} {row.db:8} {row.endpoint.label}"
        if row.failure:
            lines.append(f"FAIL  {who}: {row.failure}")
            continue
        if row.endpoint.kind == "bare":
            continue
        bare = bares.get((row.server, row.db))
        share = ratio(row.rate, bare.rate) if bare is not None else None
        floor = READ_SHARE if row.endpoint.kind == "read" else WRITE_SHARE
        lines.append(
            f"{verdict(share is not None and share >= floor)}  {who}: "
            f"{fmt(share * 100 if share is not None else None, '.0f')}% of the bare view's "
            f"req/s (>= {floor:.0%})"
        )
        p99 = ratio(row.percentile_ms(0.99), bare.percentile_ms(0.99) if bare else None)
        lines.append(
            f"{verdict(p99 is not None and p99 <= P99_TIMES)}  {who}: p99 {fmt(p99, '.1f')}x "
            f"the bare view's (<= {P99_TIMES:g}x)"
        )
        lines.append(
            f"{verdict(row.not_2xx == 0 and not row.stats.errors)}  {who}: every request "
            f"answered 2xx ({row.not_2xx} not, {sum(row.stats.errors.values())} errors)"
        )
    return lines


def report(
    rows: list[Row], logs: list[LogReport], notes: list[str], opts: Settings, pin: bool
) -> None:
    """The table per server and database, the targets, the notes and the server log excerpts."""
    if rows:
        pinned = f"server on core {SERVER_CORE}, load generator on core {LOADGEN_CORE}"
        print(
            f"\nREST benchmark ({pinned if pin else 'not pinned'}; {opts.connections} "
            f"keep-alive connections, {opts.duration:g} s per endpoint after {opts.warmup:g} s "
            f"of warm-up; auth: {opts.auth}; python {sys.version.split()[0]})"
        )
        bares = bare_of(rows)
        for key in dict.fromkeys((r.server, r.db) for r in rows):
            print(f"\n{key[0]} on {key[1]}")
            print(
                table(HEADERS, [cells(r, bares.get(key)) for r in rows if (r.server, r.db) == key])
            )
        print("\nTargets (reads >= 50% of the bare view's req/s, writes >= 35%, p99 <= 3x)")
        print("\n".join(target_lines(rows)))
    for note in notes:
        print(f"note: {note}")
    print_logs(logs)


# ------------------------------------------------------------------ command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.restpath",
        description="REST benchmark: the API's endpoints against a bare Django view.",
        epilog="See bench/README.md for the columns and the targets.",
    )
    parser.add_argument("--quick", action="store_true", help="3 s per endpoint, 1 s warm-up")
    parser.add_argument("--duration", type=float, default=10.0, help="measured s per endpoint")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up s per endpoint")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument(
        "--endpoints",
        default=",".join(ENDPOINT_NAMES),
        help=f"comma-separated, of {','.join(ENDPOINT_NAMES)} (bare always runs)",
    )
    parser.add_argument("--auth", default="session", choices=("session", "token"))
    parser.add_argument(
        "--job-countdown",
        type=float,
        default=240.0,
        help="countdown of the enqueued jobs (s): under JOBS_BROKER_MAX_DELAY, so each is "
        "sent to the broker; long enough that none is due during the run",
    )
    parser.add_argument(
        "--server",
        default="daphne",
        help="daphne, uvicorn, granian (comma-separated), both (daphne,uvicorn) or all",
    )
    parser.add_argument("--db", default="sqlite", help="sqlite, postgres or both")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument(
        "--conn-max-age",
        type=int,
        help="DATABASE_CONN_MAX_AGE for the servers (default: the settings' own)",
    )
    parser.add_argument("--uvicorn-ws", default="websockets-sansio", choices=UVICORN_WS)
    parser.add_argument("--quiet-wait", type=float, default=30.0)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    wanted = {n.strip() for n in args.endpoints.split(",") if n.strip()}
    if not wanted <= set(ENDPOINT_NAMES):
        parser.error(f"--endpoints takes {', '.join(ENDPOINT_NAMES)}")
    args.wanted = ["bare", *(n for n in ENDPOINT_NAMES if n in wanted and n != "bare")]
    if args.connections < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--connections and --duration must be positive")
    return args


async def run_all(
    servers: list[str],
    environments: list[tuple[Environment, dict[str, Any]]],
    opts: Settings,
    pin: bool,
) -> tuple[list[Row], list[LogReport]]:
    """Every server on every database, one after the other."""
    rows: list[Row] = []
    logs: list[LogReport] = []
    for kind in servers:
        for environment, seed in environments:
            other = await machine_quiet(opts.quiet_wait)
            if other > MACHINE_QUIET:
                log(f"{kind}/{environment.db}: the machine is busy ({other:.0%} of a core) anyway")
            try:
                found_rows, found = await run_server(kind, environment, seed, opts, pin)
            except (RuntimeError, TimeoutError, OSError) as error:
                failed = Endpoint("bare", "bare", "GET", "/bench/bare/")
                found_rows = [Row(kind, environment.db, failed, failure=str(error)[:2000])]
                found = []
            rows.extend(found_rows)
            logs.extend(found)
    return rows, logs


def main(argv: list[str] | None = None) -> int:
    """Prepare the databases, run every server on each, print the tables."""
    args = parse_args(argv)
    stop_on_signals()
    servers, notes = parse_servers(args.server)
    dbs = parse_databases(args.db)
    opts = Settings(
        args.duration,
        args.warmup,
        args.connections,
        args.auth,
        args.job_countdown,
        args.uvicorn_ws,
        args.quiet_wait,
        args.wanted,
    )
    pin = can_pin()
    if pin:
        os.sched_setaffinity(0, {LOADGEN_CORE})
    else:
        notes.append("fewer than 2 usable cores: server and load generator are not pinned")
    overrides = dict(OVERRIDES)
    if args.conn_max_age is not None:
        overrides["DATABASE_CONN_MAX_AGE"] = str(args.conn_max_age)
    root = Path(tempfile.mkdtemp(prefix="switchboard-bench-rest-"))
    rows: list[Row] = []
    logs: list[LogReport] = []
    prepared: list[tuple[Environment, dict[str, Any]]] = []
    interrupted = False
    try:
        for db in dbs:
            log(f"preparing the {db} database")
            try:
                environment = Environment.prepare(
                    root, django=True, db=db, postgres_url=args.postgres_url, overrides=overrides
                )
            except DatabaseUnavailable as error:
                notes.append(f"{error}: the {db} rows are skipped")
                continue
            prepared.append((environment, {}))  # dropped at the end even if seeding fails
            prepared[-1] = (environment, seed_database(environment))
            notes.append(f"db {db}: {environment.where}")
        notes.append(
            "the servers ran with "
            + " ".join(f"{k}={v}" for k, v in overrides.items())
            + f"; enqueued jobs have countdown {args.job_countdown:g} s and no worker runs them"
        )
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            rows, logs = runner.run(
                asyncio.wait_for(run_all(servers, prepared, opts, pin), args.max_seconds)
            )
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: every server was stopped", file=sys.stderr)
    except TimeoutError:
        print(f"stopped after --max-seconds {args.max_seconds:g}", file=sys.stderr)
    finally:
        for environment, _ in prepared:
            environment.discard()
        report(rows, logs, notes, opts, pin)
        keep_or_remove(root, args.keep or bool(logs))
    return 130 if interrupted else (1 if any(r.failure for r in rows) else 0)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop (a dependency of uvicorn[standard]) when there is one: the client's own CPU per
    # request stays well under the server's, so the generator is not what limits the rate.
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    sys.exit(main())
