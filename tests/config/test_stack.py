"""The run command (`python -m config.stack`): up with every part ready, down leaving nothing."""

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psutil
import pytest

from config import redis_server
from config.redis_server import STACK_URL_FILE, free_port
from config.stack import with_tail_file
from tests.support.processes import BASE_DIR, http_json, wait_until

pytestmark = pytest.mark.e2e


def processes_using(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + str(proc.info["environ"] or {})
        except (psutil.Error, TypeError):
            continue
        if marker in text and proc.pid != os.getpid():
            found.append(proc)
    return found


def clean_environment(var_dir: Path) -> dict[str, str]:
    """What a user's new terminal has: no REDIS_URL or other settings of this test run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "REDIS_URL",
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "DJANGO_SETTINGS_MODULE",
            "CELERY_TASK_DEFAULT_QUEUE",
            "CHANNEL_LAYER_PREFIX",
            "SWITCHBOARD_TEST_RUN",
            "SWITCHBOARD_PRIVATE_REDIS",
        }
    }
    env["SWITCHBOARD_VAR_DIR"] = str(var_dir)
    return env


def start_stack(
    env: dict[str, str], log: IO[str], module: str = "config.stack"
) -> subprocess.Popen[str]:
    """`make run`'s command (or `make prod`'s), in a process group of its own, its output into
    `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_run_command_serves_a_ready_stack_and_stops_every_process(tmp_path: Path, stop_signal):
    # given: no REDIS_URL, so the command starts its own Redis under the var dir
    port = free_port()
    var_dir = tmp_path / "var"
    env = clean_environment(var_dir)
    env["PORT"] = str(port)
    output = tmp_path / "run.log"
    log = output.open("w")
    run = start_stack(env, log)
    try:
        # when
        wait_until(lambda: "Switchboard is running" in output.read_text(), timeout=90)
        status, body, _ = http_json(f"http://127.0.0.1:{port}/api/health/ready/")
        children = processes_using(str(var_dir))
        run.send_signal(stop_signal)
        run.wait(60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        log.close()
    text = output.read_text()

    # then
    assert status == 200, body
    assert all(check["ok"] for check in body["checks"].values())
    assert re.search(r"demo user: demo / \S{8,}", text)
    for url in ("/api/docs/", "/api/health/", f"127.0.0.1:{port}/"):
        assert url in text
    assert len(children) >= 3  # redis, daphne, celery worker (and its pool)
    # the worker's log is in the terminal and in the file offered as `log:worker`
    assert re.search(r"celery@\S+ ready\.", text)
    assert re.search(r"celery@\S+ ready\.", (var_dir / "worker.log").read_text())
    wait_until(lambda: not processes_using(str(var_dir)), timeout=15)


ENQUEUE_ARGS = ["-p", "steps=3", "-p", "max_seconds=0.2", "--countdown", "1", "--follow"]


def test_a_second_terminal_reaches_the_running_stack(tmp_path: Path):
    # given: `make run` up with its private Redis, and a new terminal without REDIS_URL
    var_dir = tmp_path / "var"
    env = clean_environment(var_dir)
    output = tmp_path / "run.log"
    log = output.open("w")
    run = start_stack({**env, "PORT": str(free_port())}, log)
    try:
        wait_until(lambda: "Switchboard is running" in output.read_text(), timeout=90)
        stack_redis = (var_dir / STACK_URL_FILE).read_text().strip()

        # when: the README's commands, from that terminal
        started = time.monotonic()
        enqueue = subprocess.run(
            [sys.executable, "manage.py", "enqueue", "demo.sleep", *ENQUEUE_ARGS],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - started
        ping = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "config", "inspect", "ping", "-t", "5"],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        try:
            run.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
        log.close()

    # then: the job ran on the stack's worker at its countdown, not after a re-send
    assert enqueue.returncode == 0, enqueue.stderr
    assert took < 20, took
    assert f"Redis: {stack_redis} (the one `make run` started;" in enqueue.stderr
    assert "No Celery worker" not in enqueue.stderr
    # into a pipe, one line per change: no carriage returns, no escape codes
    lines = enqueue.stdout.splitlines()
    assert "\r" not in enqueue.stdout
    assert "\x1b" not in enqueue.stdout
    bars = [line for line in lines if line.startswith("[")]
    assert "3/3 succeeded" in bars[-1], lines
    assert all(a != b for a, b in itertools.pairwise(bars)), bars
    assert lines[-1].startswith("result: ")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "pong" in ping.stdout
    # and the stack, once stopped, is no longer offered to other terminals
    assert not (var_dir / STACK_URL_FILE).exists()


def test_with_no_stack_and_no_redis_a_process_says_so(tmp_path: Path, monkeypatch):
    # given: no REDIS_URL, a stale URL file of a stopped stack, nothing on the default port
    (tmp_path / STACK_URL_FILE).parent.mkdir(parents=True)
    (tmp_path / STACK_URL_FILE).write_text(f"redis://127.0.0.1:{free_port()}/0\n")
    monkeypatch.setattr(redis_server, "DEFAULT_URL", f"redis://127.0.0.1:{free_port()}/0")

    # when
    url, which = redis_server.local_url({}, tmp_path)

    # then
    assert url == redis_server.DEFAULT_URL
    assert which.startswith("No Redis: REDIS_URL is unset, `make run` is not running")


def test_redis_url_when_set_is_used_as_given(tmp_path: Path):
    assert redis_server.local_url({"REDIS_URL": "redis://elsewhere:1/2"}, tmp_path) == (
        "redis://elsewhere:1/2",
        "",
    )


def test_the_worker_log_is_added_to_the_configured_ones(tmp_path: Path):
    log = tmp_path / "worker.log"

    assert with_tail_file("", "worker", log) == f"worker={log}"
    assert with_tail_file("app=/x.log,", "worker", log) == f"app=/x.log,worker={log}"
    assert with_tail_file("worker=/mine.log", "worker", log) == "worker=/mine.log"
