"""`python -m config.prod` (`make prod`): locally, what production runs; Ctrl-C or SIGTERM stops it.

- WEB_PROCESSES uvicorn processes (production settings, the flags the README gives), each on
  its own port from PORT up, so that each can be restarted alone: a rolling restart;
- WORKERS Celery workers (prefork pool, WORKER_CONCURRENCY each) and exactly one beat
  (`config/beat.py` keeps a second one from sending);
- on the PostgreSQL, Redis and broker given by DATABASE_URL, REDIS_URL and CELERY_BROKER_URL,
  by default this machine's PostgreSQL, Redis and RabbitMQ on their usual ports.

Before anything starts, the settings are checked for the topology (`config/topology.py`); the
database is created if missing and migrated, static files collected. All processes write
their metrics to one directory (`/metrics` adds them up).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from honcho.manager import Manager

from config.stack import BASE_DIR, _readiness, _stop_on_sigterm

DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/switchboard",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    # Plain HTTP on loopback: no redirect to HTTPS, no HSTS.
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_HSTS_SECONDS": "0",
}
# The settings, checked once before anything starts (each process checks them again).
CHECK = (
    "import django; django.setup(); from config import topology; "
    "topology.check_or_exit('make prod')"
)
UVICORN_FLAGS = (
    "--ws websockets-sansio --ws-max-size 1048576 --ws-per-message-deflate false "
    "--log-level warning --timeout-graceful-shutdown 30"
)


def environment(var_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in DEFAULTS.items():
        env.setdefault(name, value)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    env["PYTHONUNBUFFERED"] = "1"
    env["SWITCHBOARD_VAR_DIR"] = str(var_dir)
    env.setdefault("STATIC_ROOT", str(var_dir / "static"))
    if "SECRET_KEY" not in env:  # kept across runs, so that sessions and tokens survive
        key_file = var_dir / "secret-key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(50))
            key_file.chmod(0o600)
        env["SECRET_KEY"] = key_file.read_text().strip()
    return env


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database `url` names, if it does not exist yet."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return
    import psycopg

    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, str(BASE_DIR / "manage.py"), *args], env=env, check=True
    )


def processes(env: dict[str, str], var_dir: Path) -> dict[str, str]:
    """The command of each process, by name."""
    host, port = env.get("HOST", "127.0.0.1"), int(env.get("PORT", "8000"))
    web, workers = int(env.get("WEB_PROCESSES", "2")), int(env.get("WORKERS", "2"))
    concurrency = env.get("WORKER_CONCURRENCY", "4")
    python = sys.executable
    commands = {
        f"web.{n + 1}": f"{python} -m uvicorn config.asgi:application --host {host} "
        f"--port {port + n} {UVICORN_FLAGS}"
        for n in range(web)
    }
    for n in range(workers):
        commands[f"worker.{n + 1}"] = (
            f"{python} -m celery -A config worker -l warning --pool prefork "
            f"--concurrency {concurrency} --hostname prod{n + 1}@%h"
        )
    commands["beat"] = f"{python} -m celery -A config beat -l warning " + (
        f"--schedule {var_dir / 'beat-schedule'}"
    )
    return commands


def _announce(urls: list[str], stop: threading.Event) -> None:
    deadline = time.monotonic() + 120
    pending = list(urls)
    while pending and not stop.is_set() and time.monotonic() < deadline:
        pending = [u for u in pending if (_readiness(f"{u}/api/health/ready/") or {}).get(
            "status") != "ok"]  # fmt: skip
        stop.wait(0.5)
    if stop.is_set():
        return
    lines = ["", "Switchboard (production topology) is running (Ctrl-C stops everything):"]
    lines += [f"  web           {url}/   ready: {url not in pending}" for url in urls]
    lines += [f"  metrics       {urls[0]}/metrics", ""]
    print("\n".join(lines), flush=True)


def main() -> int:
    _stop_on_sigterm()
    var_dir = Path(os.environ.get("SWITCHBOARD_VAR_DIR", BASE_DIR / "var" / "prod"))
    var_dir.mkdir(parents=True, exist_ok=True)
    env = environment(var_dir)
    commands = processes(env, var_dir)
    web = [name for name in commands if name.startswith("web.")]
    env["SWITCHBOARD_WEB_PROCESSES"] = str(len(web))
    metrics_dir = var_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", CHECK], env=env, check=True, cwd=BASE_DIR
        )
        ensure_database(env["DATABASE_URL"])
        manage(env, "migrate", "--noinput", "-v0")
        manage(env, "collectstatic", "--noinput", "-v0")
    except subprocess.CalledProcessError as error:
        return error.returncode
    except KeyboardInterrupt:
        return 130
    manager = Manager()
    for name, command in commands.items():
        manager.add_process(name, command, env=env)
    port, host = int(env.get("PORT", "8000")), env.get("HOST", "127.0.0.1")
    stop = threading.Event()
    urls = [f"http://{host}:{port + n}" for n in range(len(web))]
    threading.Thread(target=_announce, args=(urls, stop), daemon=True).start()
    try:
        manager.loop()
    finally:
        stop.set()
    return int(manager.returncode or 0)


if __name__ == "__main__":
    sys.exit(main())
