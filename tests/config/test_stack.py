"""The run command (`python -m config.stack`): up with every part ready, down leaving nothing."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from config.redis_server import free_port
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


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_run_command_serves_a_ready_stack_and_stops_every_process(tmp_path: Path, stop_signal):
    # given: no REDIS_URL, so the command starts its own Redis under the var dir
    port = free_port()
    var_dir = tmp_path / "var"
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
        }
    }
    env.update(PORT=str(port), SWITCHBOARD_VAR_DIR=str(var_dir))
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen(
        [sys.executable, "-m", "config.stack"],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = tmp_path / "run.log"
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


def test_the_worker_log_is_added_to_the_configured_ones(tmp_path: Path):
    log = tmp_path / "worker.log"

    assert with_tail_file("", "worker", log) == f"worker={log}"
    assert with_tail_file("app=/x.log,", "worker", log) == f"app=/x.log,worker={log}"
    assert with_tail_file("worker=/mine.log", "worker", log) == "worker=/mine.log"
