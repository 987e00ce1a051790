"""Helpers the benchmarks share: the stack's processes, cores, signals, probes, tables."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import connect

from config.redis_server import PrivateRedis

BASE_DIR = Path(__file__).resolve().parent.parent

SERVER_CORE = 0
LOADGEN_CORE = 1
CEILING = "ceiling"
UVICORN_WS = ("websockets", "websockets-sansio", "wsproto")  # uvicorn's --ws choices
# Before each run, wait (up to --quiet-wait s) until other processes use less than this share
# of a core: the servers are pinned to one core, and a busy neighbour skews every column.
MACHINE_QUIET = 0.25
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
def spawning_on_server_core(pin: bool) -> Iterator[None]:
    """Run the block on the server core, so every process it forks starts (and stays) there."""
    if pin:
        os.sched_setaffinity(0, {SERVER_CORE})
    try:
        yield
    finally:
        if pin:
            os.sched_setaffinity(0, {LOADGEN_CORE})


@dataclass
class Server:
    """A server process in its own process group, logging to a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    pin: bool
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The gateway's address."""
        return f"ws://127.0.0.1:{self.port}/ws/"

    def start(self) -> Server:
        """Start the process on the server core, in its own session, output to the log."""
        with self.log_path.open("ab") as log, spawning_on_server_core(self.pin):
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

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process is not None and self.process.poll() is None

    def ps(self) -> Any:
        """The psutil handle of the process."""
        assert self.process is not None
        return psutil.Process(self.process.pid)

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


def cpu_seconds(proc: Any) -> float:
    """User+system CPU of a process, its live descendants and the children it has reaped."""
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        times = proc.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                ctimes = child.cpu_times()
                total += ctimes.user + ctimes.system
    return total


def own_cpu_seconds() -> float:
    """User+system CPU of this process (the load generator) alone, not of the servers it runs."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def machine_busy_seconds() -> float:
    """CPU time every core spent on anything but idling, since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def rss_bytes(proc: Any) -> int:
    """Resident memory of a process and its live descendants."""
    total = 0
    with contextlib.suppress(psutil.NoSuchProcess):
        total += proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += child.memory_info().rss
    return int(total)


def server_command(kind: str, port: int, uvicorn_ws: str = "websockets") -> list[str]:
    """The argv that starts `kind` (ceiling, daphne or uvicorn) on 127.0.0.1:port."""
    python = sys.executable
    if kind == CEILING:
        return [python, "-m", "bench.ceiling_server", "--port", str(port)]
    if kind == "daphne":
        return [
            python,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "config.asgi:application",
        ]
    if kind == "uvicorn":
        return [
            python,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            uvicorn_ws,
            # As in production (README): no per-message deflate, no 1 MiB+ frames.
            "--ws-per-message-deflate",
            "false",
            "--ws-max-size",
            "1048576",
            # Channels' router has no lifespan support; uvicorn would log that on each start.
            "--lifespan",
            "off",
        ]
    raise ValueError(kind)


def celery_worker(env: dict[str, str], log_path: Path, pool: str, concurrency: int) -> Server:
    """The stack's one Celery worker, not started; unpinned: the caller places it."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-l",
        "warning",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--hostname",
        f"bench-{os.getpid()}@%h",
        # The private Redis has no other workers: mingle would only wait for answers at
        # start, and gossip adds broker traffic during the measurement.
        "--without-mingle",
        "--without-gossip",
    ]
    return Server("worker", argv, env, log_path, 0, False)


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
            with spawning_on_server_core(pin):
                redis.start()
            yield redis
        finally:
            redis.stop()


def ws_connect(url: str, timeout: float, headers: dict[str, str] | None = None) -> Any:
    """A client connection to `url`, without compression or pings (use as `async with`)."""
    # No compression (Daphne offers none; zlib would dominate both CPU and memory) and no
    # client pings (the measured CPU is the server's answer to our frames, not keep-alives).
    return connect(
        url,
        compression=None,
        ping_interval=None,
        open_timeout=timeout,
        close_timeout=2,
        max_queue=None,
        max_size=2**20,
        additional_headers=headers,
    )


@dataclass
class LogReport:
    """Error lines a server wrote during one part (warm-up and run, or shutdown) of a run."""

    server: str
    label: str
    part: str
    path: Path
    error_lines: int
    excerpt: str


def scan_log(
    server: Server, label: str, part: str, start: int, end: int | None = None
) -> LogReport | None:
    """Count ERROR/Traceback/WARNING lines the server logged between two byte offsets."""
    if not server.log_path.exists():
        return None
    with server.log_path.open("rb") as log:
        log.seek(start)
        text = log.read(-1 if end is None else end - start).decode(errors="replace")
    markers = ("Traceback", "ERROR", "CRITICAL", "WARNING", "Exception")
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if any(m in line for m in markers)]
    if not hits:
        return None
    first = hits[0]
    excerpt = "\n".join(lines[first : first + 25])
    return LogReport(server.name, label, part, server.log_path, len(hits), excerpt)


def fmt(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or `-` when there is none."""
    return "-" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing (or b is 0)."""
    return a / b if a is not None and b else None


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned text columns, two spaces apart."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, [("-" * w) for w in widths], *rows]
    ]
    return "\n".join(lines)


async def machine_quiet(limit: float) -> float:
    """Wait up to `limit` s until others use under MACHINE_QUIET of a core; their last use."""
    deadline = time.monotonic() + limit
    while True:
        busy, own = machine_busy_seconds(), own_cpu_seconds()
        await asyncio.sleep(1.0)
        other = max(0.0, machine_busy_seconds() - busy - (own_cpu_seconds() - own))
        if other <= MACHINE_QUIET or time.monotonic() >= deadline:
            return other
        print(f"waiting for a quieter machine: others use {other:.0%} of a core", file=sys.stderr)


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
