"""Starting and stopping the stack under test: database, Redis, servers, worker, their logs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import importlib.util
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bench.probe import process
from bench.rest import ERRORS, Rest
from config.rabbitmq_server import PrivateRabbitMQ, rabbitmq_server_script
from config.redis_server import PrivateRedis, stop_process_group

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    Settings = TypeVar("Settings", bound=DataclassInstance)

BASE_DIR = Path(__file__).resolve().parent.parent

SERVER_CORE = 0
LOADGEN_CORE = 1
CEILING = "ceiling"
SERVERS = ("daphne", "uvicorn", "granian")  # the ASGI servers a benchmark may run
UVICORN_WS = ("websockets", "websockets-sansio", "wsproto")  # uvicorn's --ws choices
DATABASES = ("sqlite", "postgres")
LAYERS = ("pubsub", "core", "rabbitmq")  # CHANNEL_LAYER values a benchmark may run
# The PostgreSQL server a `--db postgres` run creates its database on (trust auth, loopback).
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Granian's --backpressure caps the connections a worker holds open, and a WebSocket holds
# one for its whole life: the default (the backlog) would stop a 10,000-socket run at 2,048.
GRANIAN_BACKPRESSURE = 65_536
_PR_SET_PDEATHSIG = 1
# How long a server may take to answer after its start: importing the app takes seconds, and
# minutes on a core that another process keeps busy.
START_LIMIT = 180.0


def _die_with_parent() -> None:
    # Linux: the kernel sends SIGTERM to a server if the benchmark itself is killed -9.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def can_pin() -> bool:
    """True when cores 0 and 1 exist and this process may run on both."""
    return hasattr(os, "sched_setaffinity") and {SERVER_CORE, LOADGEN_CORE} <= set(
        os.sched_getaffinity(0)
    )


@contextlib.contextmanager
def spawning_on(cores: set[int] | None) -> Iterator[None]:
    """Run the block on `cores` (None: as before), so a process it starts runs there."""
    if cores is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def server_cores(pin: bool) -> set[int] | None:
    """Where the servers and their Redis run: the server core when pinning, else anywhere."""
    return {SERVER_CORE} if pin else None


@dataclass
class Server:
    """A server process in its own process group, logging to a file; stopped on leaving `with`."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    cores: set[int] | None  # where it runs (None: wherever this process may)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The gateway's address."""
        return f"ws://127.0.0.1:{self.port}/ws/"

    def start(self) -> Server:
        """Start the process on its cores, in its own session, output to the log."""
        with self.log_path.open("ab") as log, spawning_on(self.cores):
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
                self.argv,
                cwd=BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process is not None and self.process.poll() is None

    def ps(self) -> Any:
        """The psutil handle of the process."""
        assert self.process is not None
        return process(self.process.pid)

    def log_size(self) -> int:
        """Bytes logged so far: where a later scan of the log starts."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to its process group, SIGKILL after `timeout` seconds."""
        if self.process is not None:
            stop_process_group(self.process, timeout)


def server_command(kind: str, port: int, uvicorn_ws: str = "websockets-sansio") -> list[str]:
    """The argv that starts `kind` (ceiling, daphne, uvicorn or granian) on 127.0.0.1:port."""
    python, app = sys.executable, "config.asgi:application"
    if kind == CEILING:
        return [python, "-m", "bench.ceiling_server", "--port", str(port)]
    if kind == "daphne":
        return [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    if kind == "uvicorn":
        argv = [python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--ws", uvicorn_ws]
        # As in production (README): no per-message deflate, no 1 MiB+ frames.
        argv += ["--ws-per-message-deflate", "false", "--ws-max-size", "1048576"]
        argv += ["--log-level", "warning"]
        # Channels' router has no lifespan support; uvicorn would log that on each start.
        return [*argv, "--lifespan", "off"]
    if kind == "granian":
        # ASGI without lifespan (Channels' router has none), as uvicorn's --lifespan off.
        argv = [python, "-m", "granian", "--interface", "asginl"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        # One worker on uvloop, HTTP/1.1 and WebSockets (no compression: granian has none),
        # no access log; the backlog as uvicorn's and the ceiling's. Granian 2.8 has no
        # WebSocket message size limit to set.
        argv += ["--loop", "uvloop", "--http", "1", "--ws", "--no-access-log"]
        argv += ["--backlog", "2048", "--backpressure", str(GRANIAN_BACKPRESSURE)]
        return [*argv, app]
    raise ValueError(kind)


def server_installed(kind: str) -> bool:
    """True when the server's module can be imported by this interpreter."""
    return importlib.util.find_spec(kind) is not None


def parse_servers(spec: str) -> tuple[list[str], list[str]]:
    """The servers a `--server` value names, and a note for each one skipped.

    `spec` is a comma-separated list of daphne, uvicorn and granian; `both` stands for
    daphne and uvicorn, `all` for all three.
    """
    spec = spec.replace("all", ",".join(SERVERS)).replace("both", "daphne,uvicorn")
    servers: list[str] = []
    notes: list[str] = []
    for name in (s.strip() for s in spec.split(",")):
        if name not in SERVERS:
            raise SystemExit(f"unknown --server {name!r}: choose from {', '.join(SERVERS)}")
        if name in servers:
            continue
        if not server_installed(name):
            notes.append(f"{name} is not installed in this virtualenv: skipped")
            continue
        servers.append(name)
    return servers, notes


def parse_databases(spec: str) -> list[str]:
    """The databases a `--db` value names: sqlite, postgres or both."""
    if spec == "both":
        return list(DATABASES)
    if spec not in DATABASES:
        raise SystemExit(f"unknown --db {spec!r}: choose from sqlite, postgres, both")
    return [spec]


def parse_layers(spec: str) -> list[str]:
    """The channel layers a `--layer` value names (comma-separated), RabbitMQ's when it can
    run here."""
    layers: list[str] = []
    for name in (s.strip() for s in spec.split(",")):
        if name not in LAYERS:
            raise SystemExit(f"unknown --layer {name!r}: choose from {', '.join(LAYERS)}")
        if name == "rabbitmq" and rabbitmq_server_script() is None:
            raise SystemExit("--layer rabbitmq needs rabbitmq-server (Debian's package)")
        if name not in layers:
            layers.append(name)
    return layers


def raise_fd_limit(wanted: int) -> str:
    """Raise the open-file limit to the hard limit (servers started later inherit it).

    A note when that is still short of `wanted` files, else "".
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, wanted) if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        return f"open files are limited to {target} (hard limit): a run needing {wanted} may fail"
    return ""


def celery_worker(
    env: dict[str, str], log_path: Path, pool: str, concurrency: int, cores: set[int] | None
) -> Server:
    """The stack's one Celery worker, on `cores` (None: anywhere), not started."""
    argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "-l", "warning"]
    argv += ["--pool", pool, "--concurrency", str(concurrency)]
    argv += ["--hostname", f"bench-{os.getpid()}@%h"]
    # The private Redis has no other workers: mingle would only wait for answers at start,
    # and gossip adds broker traffic during the measurement.
    argv += ["--without-mingle", "--without-gossip"]
    return Server("worker", argv, env, log_path, 0, cores)


def uvicorn_installed() -> bool:
    """True when uvicorn imports in this interpreter."""
    return server_installed("uvicorn")


class DatabaseUnavailable(RuntimeError):
    """The database server a run asked for does not answer."""


def postgres_create(server_url: str) -> str:
    """Create a fresh database on the PostgreSQL server at `server_url`; its URL."""
    import psycopg  # only runs on PostgreSQL need it

    name = f"bench_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a fixed prefix and hex: no injection
    except psycopg.Error as error:
        raise DatabaseUnavailable(f"PostgreSQL at {_public(server_url)}: {error}") from error
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def postgres_drop(database_url: str) -> None:
    """Drop a database `postgres_create` made, even if a connection to it is left."""
    import psycopg

    server_url, name = database_url.rsplit("/", 1)
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(f"{server_url}/postgres", autocommit=True, connect_timeout=3) as conn,
    ):
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _public(url: str) -> str:
    """A database URL without its user and password."""
    return url.split("@")[-1]


@dataclass
class Environment:
    """The temp dir, the migrated database and the settings every Django server gets."""

    root: Path
    env: dict[str, str]
    db: str = "sqlite"  # or "postgres"
    database_url: str = ""

    @classmethod
    def prepare(
        cls,
        root: Path,
        django: bool,
        db: str = "sqlite",
        postgres_url: str = POSTGRES_URL,
        settings: str = "config.settings.local",
        overrides: dict[str, str] | None = None,
        rooms: Sequence[str] = (),
    ) -> Environment:
        """The environment; with `django`, also a migrated database with the demo rooms.

        SQLite is a file in `root`; PostgreSQL a fresh database on the server at
        `postgres_url` (DatabaseUnavailable when it does not answer), dropped by `discard`.
        `overrides` go into the environment of every command and server; `rooms` are
        created besides the demo ones.
        """
        if db == "postgres":
            database_url = postgres_create(postgres_url)
        else:
            database_url = f"sqlite:///{root / 'bench.sqlite3'}"
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": settings,
                "DEBUG": "0",
                "DATABASE_URL": database_url,
                # The demo password file and anything else a command writes stays in the temp dir.
                "SWITCHBOARD_VAR_DIR": str(root / "var"),
                "PYTHONUNBUFFERED": "1",
                **(overrides or {}),
            }
        )
        env.pop("CELERY_BROKER_URL", None)
        prepared = cls(root, env, db, database_url)
        if django:
            try:
                with prepared.redis(f"setup-{db}") as redis:
                    env["REDIS_URL"] = redis.url
                    prepared.manage("migrate", "--noinput", "-v0")
                    prepared.manage("seed_demo")
                    if rooms:
                        prepared.create_rooms(list(rooms))
            except BaseException:
                prepared.discard()
                raise
        return prepared

    @property
    def where(self) -> str:
        """The database, for notes: the SQLite file or the PostgreSQL database's address."""
        return _public(self.database_url)

    def discard(self) -> None:
        """Drop the PostgreSQL database (SQLite goes with the temp dir)."""
        if self.db == "postgres" and self.database_url:
            postgres_drop(self.database_url)
            self.database_url = ""

    def create_rooms(self, slugs: list[str]) -> None:
        """Create the rooms of these slugs that are missing."""
        script = (
            "import sys\n"
            "from chat.services import room_ensure\n"
            "for slug in sys.stdin.read().split():\n"
            "    room_ensure(slug=slug, title=slug)\n"
        )
        self.manage("shell", "-c", script, stdin=" ".join(slugs))

    def manage(self, *args: str, stdin: str | None = None) -> str:
        """Run a manage.py command in this environment (`stdin` as its input); its stdout."""
        result = subprocess.run(  # noqa: S603 - our interpreter and manage.py
            [sys.executable, str(BASE_DIR / "manage.py"), *args],
            env=self.env,
            cwd=BASE_DIR,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode:
            # Only the command's name: `shell -c` passes a whole script as an argument.
            raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    @contextlib.contextmanager
    def redis(self, name: str, pin: bool = False) -> Iterator[PrivateRedis]:
        """A fresh private Redis: no channel-layer groups or presence left by an earlier server."""
        redis = PrivateRedis(self.root / f"redis-{name}")
        try:
            with spawning_on(server_cores(pin)):
                redis.start()
            yield redis
        finally:
            redis.stop()

    @contextlib.contextmanager
    def rabbitmq(self, name: str, pin: bool = False) -> Iterator[PrivateRabbitMQ]:
        """A fresh private RabbitMQ node (for the RabbitMQ channel layer), on the server's core
        when pinning, as the Redis is."""
        node = PrivateRabbitMQ(self.root / f"rabbitmq-{name}")
        try:
            node.start(cores=server_cores(pin))
            yield node
        finally:
            node.stop()


def redis_ps(redis: PrivateRedis) -> Any:
    """The psutil handle of a started private Redis."""
    assert redis.process is not None
    return process(redis.process.pid)


def rabbitmq_ps(node: PrivateRabbitMQ) -> Any:
    """The psutil handle of a started private RabbitMQ node (its Erlang VM)."""
    assert node.process is not None
    return process(node.process.pid)


def _readiness(port: int) -> tuple[int, Any]:
    # A client of its own, closed in the thread that opened it (to_thread picks any thread).
    rest = Rest([port])
    try:
        return rest.call("GET", "/api/health/ready/")
    finally:
        rest.close()


async def wait_ready(port: int, processes: list[Server], within: float) -> dict[str, Any]:
    """Until /api/health/ready/ says every check is ok (a live worker included); its body."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        for proc in processes:
            if not proc.running:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        with contextlib.suppress(*ERRORS):
            status, last = await asyncio.to_thread(_readiness, port)
            checks = last.get("checks", {}) if isinstance(last, dict) else {}
            if status == 200 and checks and all(c.get("ok") for c in checks.values()):
                return dict(last)
        await asyncio.sleep(0.5)
    raise TimeoutError(f"/api/health/ready/ did not report all ok within {within:g} s: {last}")


@dataclass
class LogReport:
    """Error lines a server wrote during one part (warm-up and run, or shutdown) of a run."""

    server: str
    label: str
    part: str
    path: Path
    error_lines: int
    excerpt: str


def read_log(path: Path, start: int, end: int | None = None) -> list[str]:
    """The lines a log got between two byte offsets (none if there is no log)."""
    if not path.exists():
        return []
    with path.open("rb") as log:
        log.seek(start)
        return log.read(-1 if end is None else end - start).decode(errors="replace").splitlines()


def scan_log(
    server: Server, label: str, part: str, start: int, end: int | None = None
) -> LogReport | None:
    """Count ERROR/Traceback/WARNING lines the server logged between two byte offsets."""
    markers = ("Traceback", "ERROR", "CRITICAL", "WARNING", "Exception")
    lines = read_log(server.log_path, start, end)
    hits = [i for i, line in enumerate(lines) if any(m in line for m in markers)]
    if not hits:
        return None
    first = hits[0]
    excerpt = "\n".join(lines[first : first + 25])
    return LogReport(server.name, label, part, server.log_path, len(hits), excerpt)


def from_args(cls: type[Settings], args: argparse.Namespace) -> Settings:
    """A dataclass of run settings, from the command-line options of the same names."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    # SIGTERM takes Ctrl-C's path: inside asyncio.run that cancels the running task, whose
    # clean-up stops its processes, then KeyboardInterrupt reaches main().
    signal.raise_signal(signal.SIGINT)


def stop_on_signals() -> None:
    """Make Ctrl-C, `kill -INT` and SIGTERM stop a run the same way: KeyboardInterrupt."""
    # A shell starts background jobs with SIGINT ignored; `kill -INT` must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def log(stage: str) -> None:
    """A timestamped progress line on stderr, to match against the server and worker logs."""
    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    print(f"{stamp} {stage}", file=sys.stderr, flush=True)


def died(processes: list[Server]) -> list[str]:
    """A failure line for each process that is no longer running."""
    return [
        f"the {proc.name} process died during the run" for proc in processes if not proc.running
    ]


def print_failure(error: BaseException, processes: list[Server]) -> str:
    """Print `error` and the last lines of every process's log on stderr; its first line."""
    print(f"failed: {error!r}", file=sys.stderr)
    for proc in processes:
        print(f"\n--- last lines of {proc.log_path}\n{proc.log_tail()}", file=sys.stderr)
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__


def keep_or_remove(root: Path, keep: bool) -> None:
    """Say where the temp dir (logs, database) is if `keep`, else delete it."""
    if keep:
        print(f"\ntemp dir kept (logs, database): {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
