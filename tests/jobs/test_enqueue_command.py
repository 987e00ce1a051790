"""`manage.py enqueue ... --follow`, the tutorial's shell session, against a real worker."""

import subprocess
import sys

import pytest

from tests.factories import UserFactory
from tests.support.processes import BASE_DIR

pytestmark = pytest.mark.django_db(transaction=True)


def run(shared_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "enqueue", *args],
        cwd=BASE_DIR, env=shared_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_enqueue_with_countdown_and_follow_shows_progress_until_done(shared_env, worker):
    UserFactory.create(username="demo")

    result = run(shared_env, "demo.sleep", "-p", "steps=3", "-p", "max_seconds=0.05",
                 "--countdown", "1", "--follow")  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Going to sleep for") == 3
    assert "[##############################] 3/3 succeeded" in result.stdout
    assert '"steps": 3' in result.stdout


def test_bad_params_are_a_clear_error(shared_env):
    UserFactory.create(username="demo")

    result = run(shared_env, "demo.sleep", "-p", "steps=1000")

    assert result.returncode != 0
    assert "invalid_params" in result.stderr


def test_with_no_worker_on_its_queue_the_command_says_the_job_waits(shared_env, worker):
    # given: a worker runs, but on another queue than this command's
    UserFactory.create(username="demo")
    env = {**shared_env, "CELERY_TASK_DEFAULT_QUEUE": "switchboard-test-nobody-consumes"}

    result = run(env, "demo.sleep", "-p", "steps=1", "--countdown", "600")

    assert result.returncode == 0, result.stderr
    assert "No Celery worker consumes queue 'switchboard-test-nobody-consumes'" in result.stderr


def test_with_a_worker_on_its_queue_the_command_does_not_warn(shared_env, worker):
    UserFactory.create(username="demo")

    result = run(shared_env, "demo.sleep", "-p", "steps=1", "--countdown", "600")

    assert result.returncode == 0, result.stderr
    assert "No Celery worker" not in result.stderr
