"""Real server processes for tests: Daphne, a Celery worker, and a whole stack of both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from config.redis_server import free_port

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def http_json(
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any, Message]:
    """A JSON request with the standard library: (status, parsed body or None, headers)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw, status, got = response.read(), response.status, response.headers
    except urllib.error.HTTPError as error:
        raw, status, got = error.read(), error.code, error.headers
    return status, (json.loads(raw) if raw else None), got


@dataclass
class Service:
    """One child process in its own process group, logging to a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def child_env(**overrides: str) -> dict[str, str]:
    """This test run's environment (Redis, queue, settings) plus overrides."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def daphne(env: dict[str, str], log_dir: Path, port: int | None = None) -> tuple[Service, str]:
    """Daphne, the development server (`make run`)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    return _asgi_server(f"daphne-{port}", [*argv, "config.asgi:application"], env, log_dir, port)


def uvicorn(env: dict[str, str], log_dir: Path, port: int | None = None) -> tuple[Service, str]:
    """uvicorn as the README runs it in production (sans-I/O websockets)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--ws", "websockets-sansio", "--ws-max-size", "1048576"]
    argv += ["--ws-per-message-deflate", "false", "--log-level", "warning", "--lifespan", "off"]
    return _asgi_server(f"uvicorn-{port}", argv, env, log_dir, port)


def _asgi_server(
    name: str, argv: list[str], env: dict[str, str], log_dir: Path, port: int
) -> tuple[Service, str]:
    service = Service(name, argv, env, log_dir / f"{name}.log").start()
    url = f"http://127.0.0.1:{port}"

    def live() -> bool:
        if not service.running:
            raise AssertionError(f"{name} exited:\n{service.log()[-3000:]}")
        try:
            return http_json(f"{url}/api/health/", timeout=1)[0] == 200
        except OSError:
            return False

    wait_until(live, timeout=30)
    return service, url


def celery_worker(env: dict[str, str], log_dir: Path, name: str = "test") -> Service:
    hostname = f"{name}-{os.getpid()}-{free_port()}@%h"
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-l",
        "info",
        "--pool",
        "threads",
        "--concurrency",
        "4",
        "--hostname",
        hostname,
        "--without-gossip",
        "--without-mingle",
    ]
    service = Service(f"worker-{name}", argv, env, log_dir / f"worker-{name}.log").start()

    def ready() -> bool:
        if not service.running:
            raise AssertionError(f"celery worker exited:\n{service.log()[-3000:]}")
        return " ready." in service.log()

    wait_until(ready, timeout=45)
    return service


@dataclass
class Stack:
    """A migrated database, a Daphne server and a Celery worker sharing one configuration."""

    env: dict[str, str]
    log_dir: Path
    url: str = ""
    services: list[Service] = field(default_factory=list)

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=BASE_DIR,
            env=self.env,
            check=True,
            capture_output=True,
        )

    def start(self, *, worker: bool = True) -> Stack:
        self.migrate()
        server, self.url = daphne(self.env, self.log_dir)
        self.services.append(server)
        if worker:
            self.services.append(celery_worker(self.env, self.log_dir, name="stack"))
        return self

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def readiness(self) -> tuple[int, Any]:
        status, body, _ = http_json(f"{self.url}/api/health/ready/")
        return status, body

    def wait_ready(self, timeout: float = 30) -> dict[str, Any]:
        def ok() -> Any:
            status, body = self.readiness()
            return body if status == 200 else None

        return dict(wait_until(ok, timeout=timeout, interval=0.3))


@contextmanager
def running_stack(env: dict[str, str], log_dir: Path, *, worker: bool = True) -> Iterator[Stack]:
    stack = Stack(env, log_dir)
    try:
        yield stack.start(worker=worker)
    finally:
        stack.stop()


def manage_shell(env: dict[str, str], code: str) -> str:
    """Run `code` in `manage.py shell` with `env`; the last line it printed."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def new_user_token(env: dict[str, str], username: str) -> str:
    """A new user's API token, made in the database `env` points at."""
    return manage_shell(
        env,
        "from django.contrib.auth.models import User\n"
        "from rest_framework.authtoken.models import Token\n"
        f"print(Token.objects.create(user=User.objects.create_user({username!r})).key)\n",
    )
