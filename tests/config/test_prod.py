"""The production topology in one command (`python -m config.prod`, `make prod`), and the
settings checks every process makes at start (`config/topology.py`)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest
from django.test import override_settings

from config import topology
from config.redis_server import free_port
from tests.config.test_stack import clean_environment, processes_using, start_stack
from tests.conftest import skip_or_fail
from tests.e2e.conftest import RABBITMQ_URL, rabbitmq_answers
from tests.support.databases import postgres_database
from tests.support.processes import BASE_DIR, http_json, new_user_token, wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({}, []),
        (
            {"SWITCHBOARD_HOSTS": 2, "SQLITE": True},
            ["SQLite", "REDIS_URL", "CELERY_BROKER_URL", "CHANNEL_LAYER_HOSTS"],
        ),
        (
            {"SWITCHBOARD_WEB_PROCESSES": 3, "SQLITE": True, "DEBUG": False},
            ["SQLite in production"],
        ),
        ({"SWITCHBOARD_WEB_PROCESSES": 3, "SQLITE": True, "DEBUG": True}, []),  # several runservers
        ({"SWITCHBOARD_WEB_PROCESSES": 3, "SQLITE": False, "DEBUG": False}, []),
    ],
)
def test_unsafe_combinations_are_named(changes, refused):
    with override_settings(**changes):
        found = topology.problems()

    assert len(found) == len(refused)
    for problem, word in zip(found, refused, strict=True):
        assert word in problem


def test_a_process_with_an_unsafe_topology_refuses_to_start_and_says_why(tmp_path: Path):
    env = clean_environment(tmp_path / "var")
    env.update(SWITCHBOARD_HOSTS="2", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")

    started = subprocess.run(
        [sys.executable, "-m", "config.prod"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert started.returncode == 2
    assert "switchboard make prod: refusing to start" in started.stderr
    assert "SWITCHBOARD_HOSTS=2 with SQLite" in started.stderr
    assert not processes_using(str(tmp_path / "var"))


def test_prod_runs_several_servers_workers_and_one_beat_on_postgres_and_rabbitmq(tmp_path: Path):
    if not rabbitmq_answers():
        skip_or_fail(f"RabbitMQ does not answer at {RABBITMQ_URL} (set TEST_RABBITMQ_URL)")
    port = free_port()
    while free_port() == port + 1:  # two ports in a row: web.1 and web.2
        port = free_port()
    var_dir = tmp_path / "var"
    with postgres_database("switchboard_prod") as database_url:
        env = clean_environment(var_dir)
        env.update(
            PORT=str(port),
            WEB_PROCESSES="2",
            WORKERS="1",
            WORKER_CONCURRENCY="2",
            DATABASE_URL=database_url,
            REDIS_URL=os.environ["REDIS_URL"],
            CELERY_BROKER_URL=RABBITMQ_URL,
            CELERY_TASK_DEFAULT_QUEUE=f"prod-{uuid.uuid4().hex[:8]}",
            CHANNEL_LAYER_PREFIX=f"prod{uuid.uuid4().hex[:8]}",
        )
        output = tmp_path / "prod.log"
        with output.open("w") as log:
            prod = start_stack(env, log, "config.prod")
            try:
                wait_until(lambda: "production topology) is running" in output.read_text(), 120)
                token = _user_token(env)
                auth = {"Authorization": f"Token {token}"}
                first, second = (f"http://127.0.0.1:{port + n}" for n in (0, 1))
                readiness = [http_json(f"{url}/api/health/ready/")[:2] for url in (first, second)]
                status, job, _ = http_json(
                    f"{first}/api/jobs/",
                    method="POST",
                    body={"kind": "demo.sleep", "params": {"steps": 1, "max_seconds": 0}},
                    headers=auth,
                )
                assert status == 202, job

                def finished_on_the_other_server() -> str | None:
                    state = http_json(f"{second}/api/jobs/{job['id']}/", headers=auth)[1]
                    return state["status"] if state["status"] == "succeeded" else None

                wait_until(finished_on_the_other_server, timeout=60, interval=0.3)
                metrics = _scrape(second)
                children = _command_lines(processes_using(str(var_dir)))
                prod.send_signal(signal.SIGTERM)
                prod.wait(60)
            finally:
                if prod.poll() is None:
                    os.killpg(prod.pid, signal.SIGKILL)
        text = output.read_text()

    for status, body in readiness:
        assert status == 200, body
    names = " ".join(children)
    assert names.count("uvicorn config.asgi:application") == 2
    assert names.count("celery -A config beat") == 1
    assert re.search(r"beat \S+: sending", text)  # the one beat holds the lock
    # Both servers' requests, and the job the worker ran, in one scrape of one server.
    assert 'switchboard_jobs_finished_total{kind="demo.sleep",status="succeeded"} 1.0' in metrics
    workers = re.search(r"^switchboard_workers_up (\S+)$", metrics, re.MULTILINE)
    assert workers is not None
    assert float(workers.group(1)) >= 1
    wait_until(lambda: not processes_using(str(var_dir)), timeout=30)


def _command_lines(processes: list[psutil.Process]) -> list[str]:
    """The command lines of these processes that still run (not the shells honcho starts)."""
    lines = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.name() != "sh":
                lines.append(" ".join(process.cmdline()))
    return lines


def _user_token(env: dict[str, str]) -> str:
    """A user's token, made with the settings `make prod` ran with."""
    prod_env = {**env, "DJANGO_SETTINGS_MODULE": "config.settings.production"}
    prod_env["SECRET_KEY"] = (Path(env["SWITCHBOARD_VAR_DIR"]) / "secret-key").read_text().strip()
    prod_env.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    return new_user_token(prod_env, "prod")


def _scrape(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310
        return str(response.read().decode())
