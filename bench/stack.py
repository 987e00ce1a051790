"""Starting and stopping the stack under test: database, Redis, servers, worker, their logs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bench.probe import process
from bench.rest import ERRORS, Rest
from config.redis_server import PrivateRedis

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    Settings = TypeVar("Settings", bound=DataclassInstance)

BASE_DIR = Path(__file__).resolve().parent.parent

SERVER_CORE = 0
LOADGEN_CORE = 1
CEILING = "ceiling"
UVICORN_WS = ("websockets", "websockets-sansio", "wsproto")  # uvicorn's --ws choices
_PR_SET_PDEATHSIG = 1


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
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def server_command(kind: str, port: int, uvicorn_ws: str = "websockets") -> list[str]:
    """The argv that starts `kind` (ceiling, daphne or uvicorn) on 127.0.0.1:port."""
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
        # Channels' router has no lifespan support; uvicorn would log that on each start.
        return [*argv, "--lifespan", "off"]
    raise ValueError(kind)


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
    """True when uvicorn imports in this interpreter (it is not a project dependency)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import uvicorn"], capture_output=True, check=False
    )
    return probe.returncode == 0


@dataclass
class Environment:
    """The temp dir, the migrated SQLite database and the settings every Django server gets."""

    root: Path
    env: dict[str, str]

    @classmethod
    def prepare(cls, root: Path, django: bool) -> Environment:
        """The environment; with `django`, also a migrated database with the demo rooms."""
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings.local",
                "DEBUG": "0",
                "DATABASE_URL": f"sqlite:///{root / 'bench.sqlite3'}",
                # The demo password file and anything else a command writes stays in the temp dir.
                "SWITCHBOARD_VAR_DIR": str(root / "var"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("CELERY_BROKER_URL", None)
        prepared = cls(root, env)
        if django:
            with prepared.redis("setup") as redis:
                env["REDIS_URL"] = redis.url
                prepared.manage("migrate", "--noinput", "-v0")
                prepared.manage("seed_demo")
        return prepared

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


def redis_ps(redis: PrivateRedis) -> Any:
    """The psutil handle of a started private Redis."""
    assert redis.process is not None
    return process(redis.process.pid)


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
