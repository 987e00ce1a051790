"""`python -m config.stack`: the whole local stack in one command, stopped by Ctrl-C or SIGTERM.

Starts a private Redis when REDIS_URL is unset, migrates, seeds the demo data, then runs the
ASGI server (Daphne) and a Celery worker (with beat) under honcho, which stops every process
group it started when it gets SIGINT or SIGTERM. The worker logs to the terminal and to
`var/worker.log`, which staff can follow live as `log:worker`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from honcho.manager import Manager

from config.redis_server import STACK_URL_FILE, PrivateRedis

BASE_DIR = Path(__file__).resolve().parent.parent


def _stop_on_sigterm() -> None:
    # Until honcho installs its own handlers, SIGTERM stops the preparation like Ctrl-C.
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def _readiness(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL
            return dict(json.load(response))
    except urllib.error.HTTPError as error:
        return dict(json.load(error))
    except (OSError, ValueError):
        return None


def with_tail_file(tail_files: str, name: str, path: Path) -> str:
    """`SWITCHBOARD_TAIL_FILES` with `name=path` added, unless it names `name` already."""
    named = {item.partition("=")[0].strip() for item in tail_files.split(",")}
    if name in named:
        return tail_files
    return ",".join(item for item in (tail_files.strip(" ,"), f"{name}={path}") if item)


def _announce_when_ready(base: str, demo: str, redis_note: str, stop: threading.Event) -> None:
    ready_url = f"{base}/api/health/ready/"
    deadline = time.monotonic() + 90
    report: dict[str, Any] | None = None
    while not stop.is_set() and time.monotonic() < deadline:
        report = _readiness(ready_url)
        if report and report.get("status") == "ok":
            break
        stop.wait(0.5)
    if stop.is_set():
        return
    checks = (report or {}).get("checks", {})
    status = ", ".join(f"{name} {'ok' if c['ok'] else 'DOWN'}" for name, c in checks.items())
    lines = [
        "",
        "Switchboard is running (Ctrl-C stops everything):",
        f"  app           {base}/",
        f"  API explorer  {base}/api/docs/",
        f"  API reference {base}/api/redoc/",
        f"  health        {base}/api/health/",
        f"  metrics       {base}/metrics  (Prometheus; loopback only unless configured)",
        f"  readiness     {ready_url}  ({status or 'no answer'})",
        f"  websocket     {base.replace('http', 'ws', 1)}/ws/",
        "  worker log    log:worker on the websocket, for staff (the demo user is staff)",
        f"  {demo}",
        f"  {redis_note}",
        "",
    ]
    print("\n".join(lines), flush=True)


def main() -> int:
    _stop_on_sigterm()
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    env["PYTHONUNBUFFERED"] = "1"
    # One server: no other process for its sockets to move to, so stop in a second.
    env.setdefault("SWITCHBOARD_DRAIN_SECONDS", "1")
    var_dir = Path(env.get("SWITCHBOARD_VAR_DIR", BASE_DIR / "var"))
    host = env.get("HOST", "127.0.0.1")
    port = env.get("PORT", "8000")
    redis: PrivateRedis | None = None
    var_dir.mkdir(parents=True, exist_ok=True)
    worker_log = var_dir / "worker.log"
    # Every process writes its metrics here and `/metrics` adds them up (realtime.kernel.metrics);
    # emptied first, so that no count of an earlier run is added in.
    metrics_dir = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(var_dir / "metrics")))
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["SWITCHBOARD_TAIL_FILES"] = with_tail_file(
        env.get("SWITCHBOARD_TAIL_FILES", ""), "worker", worker_log
    )
    try:
        if env.get("REDIS_URL"):
            redis_note = f"redis         {env['REDIS_URL']} (from REDIS_URL)"
        else:
            redis = PrivateRedis(var_dir / "redis").start()
            env["REDIS_URL"] = redis.url
            # Other terminals with REDIS_URL unset find it here (config.settings.local).
            (var_dir / STACK_URL_FILE).write_text(redis.url + "\n")
            redis_note = f"redis         {redis.url} (private, files in {redis.directory})"
        print("Migrating the database...", flush=True)
        _manage("migrate", "--noinput", env=env)
        demo = _manage("seed_demo", env=env).splitlines()[0]

        manager = Manager()
        manager.add_process(
            "web",
            f"{sys.executable} -m daphne -b {host} -p {port} config.asgi:application",
            env=env,
        )
        manager.add_process(
            "worker",
            f"{sys.executable} -m celery -A config worker -l info --concurrency 2 "
            f"--beat --schedule {var_dir / 'celerybeat-schedule'}",
            env={**env, "LOG_FILE": str(worker_log)},  # the terminal shows its lines too
        )
        stop = threading.Event()
        announcer = threading.Thread(
            target=_announce_when_ready,
            args=(f"http://{host}:{port}", demo, redis_note, stop),
            daemon=True,
        )
        announcer.start()
        try:
            manager.loop()
        finally:
            stop.set()
        return int(manager.returncode or 0)
    except KeyboardInterrupt:
        return 130
    except subprocess.CalledProcessError as error:
        sys.stderr.write(error.stderr or "")
        return error.returncode
    finally:
        if redis is not None:
            (var_dir / STACK_URL_FILE).unlink(missing_ok=True)
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())
