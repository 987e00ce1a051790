"""Liveness and readiness, against live processes and a Redis the test can stop."""

import urllib.request
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from config.redis_server import PrivateRedis
from tests.support.processes import child_env, http_json, running_stack, wait_until


def test_liveness_answers_without_touching_any_service():
    response = APIClient().get("/api/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_readiness_reports_every_part_ok_with_a_worker_running(live_server_url, worker):
    status, body, headers = http_json(f"{live_server_url}/api/health/ready/")

    assert status == 200, body
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "redis": True,
        "broker": True,
        "worker": True,
        "layer_round_trip": True,
    }
    assert headers["Cache-Control"] == "no-store"


def test_readiness_turns_503_when_redis_stops(tmp_path: Path, log_dir: Path):
    # given: a stack whose Redis (channel layer, cache and broker) this test owns
    redis = PrivateRedis(tmp_path / "redis").start()
    env = child_env(
        REDIS_URL=redis.url,
        CELERY_BROKER_URL=redis.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    try:
        with running_stack(env, log_dir, worker=False) as stack:
            _, before = stack.readiness()

            # when
            redis.stop()

            # then
            def redis_reported_down():
                status, body = stack.readiness()
                return (status, body) if not body["checks"]["redis"]["ok"] else None

            status, after = wait_until(redis_reported_down, timeout=30, interval=0.5)
    finally:
        redis.stop()

    assert before["checks"]["redis"]["ok"] is True
    assert before["checks"]["database"]["ok"] is True
    assert status == 503
    assert after["status"] == "unavailable"
    assert after["checks"]["broker"]["ok"] is False
    assert after["checks"]["database"]["ok"] is True
    assert "Traceback" not in str(after)


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


@pytest.mark.django_db(transaction=True)
def test_a_worker_of_another_queue_on_the_same_broker_is_not_this_stacks(
    worker, tmp_path: Path, log_dir: Path
):
    # given: the run's worker answers on this broker, for the run's queue only
    env = child_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_TASK_DEFAULT_QUEUE=f"nobody-consumes-{tmp_path.name}",
    )
    with running_stack(env, log_dir, worker=False) as stack:
        # when
        status, body = stack.readiness()
        metrics = http_text(f"{stack.url}/metrics")

    # then
    assert "\nswitchboard_workers_up 0.0\n" in metrics
    assert "\nswitchboard_broker_up 1.0\n" in metrics
    assert status == 503
    assert body["checks"]["worker"]["ok"] is False
    assert "No worker consumes the queue nobody-consumes-" in body["checks"]["worker"]["detail"]
