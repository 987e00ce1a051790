"""Jobs across broker outages and worker shutdowns, with real processes on loopback.

The broker outage runs on the broker of the pass: a private Redis stopped and started again
on the same port (its messages are lost with it), or, with `TEST_BROKER=rabbitmq`, RabbitMQ
behind a proxy that the test cuts and restores (a network outage: RabbitMQ keeps its queues).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
from celery import Celery
from django.utils import timezone
from rest_framework.authtoken.models import Token

from config.redis_server import PrivateRedis
from jobs.models import Job
from jobs.tasks import dispatch_due_jobs, run_job
from tests.factories import UserFactory
from tests.support.processes import (
    BASE_DIR,
    Service,
    celery_worker,
    child_env,
    daphne,
    http_json,
    wait_until,
)
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED = ("succeeded", "failed", "cancelled")


class Outage(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...
    def start(self) -> Any: ...


@dataclass
class RedisOutage:
    """A private Redis as the broker: stopped for real, started again empty on its port."""

    redis: PrivateRedis

    @property
    def url(self) -> str:
        return self.redis.url

    def stop(self) -> None:
        self.redis.stop()

    def start(self) -> None:
        self.redis.start()


@dataclass
class ProxyOutage:
    """The run's RabbitMQ behind a proxy: connections cut and refused, then accepted again."""

    proxy: TcpProxy
    upstream_url: str

    @property
    def url(self) -> str:
        parts = urlsplit(self.upstream_url)
        netloc = parts.netloc.rsplit("@", 1)
        auth = netloc[0] + "@" if len(netloc) == 2 else ""
        return parts._replace(netloc=f"{auth}127.0.0.1:{self.proxy.port}").geturl()

    def stop(self) -> None:
        self.proxy.stop()

    def start(self) -> None:
        self.proxy.start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Outage]:
    outage: Outage
    if os.environ.get("TEST_BROKER") == "rabbitmq":
        upstream = os.environ["CELERY_BROKER_URL"]
        parts = urlsplit(upstream)
        proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5672)).start()
        outage = ProxyOutage(proxy, upstream)
        yield outage
        proxy.stop()
    else:
        redis = PrivateRedis(tmp_path / "broker").start()
        yield RedisOutage(redis)
        redis.stop()


@pytest.fixture
def owner():
    return UserFactory.create(username="faults")


def auth(owner) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=owner)[0].key}"}


def finished(job_id: Any, timeout: float = 60) -> Job:
    return wait_until(
        lambda: (job := Job.objects.get(pk=job_id)).status in FINISHED and job,
        timeout=timeout,
        interval=0.2,
    )


def send_dispatch_due(broker_url: str, queue: str) -> None:
    """What beat does every 30 s: ask a worker to run the dispatcher."""
    app = Celery("faults-beat", broker=broker_url, set_as_current=False)
    try:
        app.send_task("jobs.dispatch_due", queue=queue)
    finally:
        app.close()


def run_dispatcher(env: dict[str, str]) -> int:
    """The dispatcher, run once in a process of its own on `env`'s broker and database."""
    code = "from jobs.services import jobs_dispatch_due; print(jobs_dispatch_due())"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v0", "-c", code],
        cwd=BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return int(done.stdout.strip().splitlines()[-1])


def ran_once(job: Job, steps: int) -> bool:
    return job.status == "succeeded" and job.attempts == 1 and job.log_lines == steps


@pytest.mark.timeout(240)
def test_broker_outage_is_a_quick_503_polling_goes_on_and_waiting_jobs_run_once_after(
    owner, broker: Outage, shared_env: dict[str, str], log_dir: Path
):
    # given: a server and a worker on a broker this test can stop, with jobs waiting in each
    # way: a countdown the worker holds until its ETA, and one that waits in the database
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    env = child_env(
        **{
            **shared_env,
            "CELERY_BROKER_URL": broker.url,
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            "JOBS_BROKER_MAX_DELAY": "4",
            "JOBS_REDISPATCH_AFTER": "1",
        }
    )
    services: list[Service] = []
    try:
        services.append(celery_worker(env, log_dir, name=f"faults-{queue}"))
        server, url = daphne(env, log_dir)
        services.append(server)
        worker = services[0]
        headers = auth(owner)
        steps = {"steps": 2, "max_seconds": 0.05}

        def enqueue(
            countdown: float, key: str | None = None, give_up_after: float = 60
        ) -> tuple[int, Any]:
            extra = {"Idempotency-Key": key} if key else {}
            status, body, reply = http_json(
                f"{url}/api/jobs/",
                method="POST",
                body={"kind": "demo.sleep", "params": steps, "countdown": countdown},
                headers={**headers, **extra},
                timeout=give_up_after,
            )
            return status, (body, reply)

        status, (held, _) = enqueue(3)
        assert status == 202, held
        status, (waits, _) = enqueue(6)
        assert status == 202, waits
        wait_until(lambda: f"jobs.run[{held['id']}] received" in worker.log(), timeout=20)
        assert Job.objects.get(pk=waits["id"]).dispatched_at is None

        # when: the broker goes away
        broker.stop()
        # A client that gives up after 10 s still gets its answer: the server's wait for the
        # broker is bounded (CELERY_BROKER_CONNECTION_TIMEOUT and the publish retry policy).
        status, (refused, reply) = enqueue(0, key="retry-me", give_up_after=10)
        polled = http_json(f"{url}/api/jobs/{held['id']}/", headers=headers)
        listed = http_json(f"{url}/api/jobs/", headers=headers)
        ready = http_json(f"{url}/api/health/ready/", timeout=30)

        # then: a clear 503; the job it wrote is failed, not pretending to be queued;
        # polling and listing answer from the database
        assert status == 503, refused
        assert refused["code"] == "broker_unavailable"
        assert reply["Retry-After"]
        assert polled[0] == 200
        assert polled[1]["status"] == "scheduled"
        assert listed[0] == 200
        statuses = {job["id"]: job["status"] for job in listed[1]["results"]}
        assert statuses[held["id"]] == "scheduled"
        assert statuses[waits["id"]] == "scheduled"
        (lost,) = set(statuses) - {held["id"], waits["id"]}
        assert statuses[lost] == "failed"
        assert (Job.objects.get(pk=lost).error or {}).get("type") == "BrokerUnavailable"
        assert ready[0] == 503
        assert ready[1]["checks"]["broker"]["ok"] is False

        # when: both waiting jobs fall due during the outage; then the broker is back, a beat
        # tick runs the dispatcher, and the refused request is retried with its key
        wait_until(lambda: timezone.now() > Job.objects.get(pk=waits["id"]).run_at, timeout=20)
        time.sleep(1.5)
        during = run_dispatcher(env)  # a dispatcher run that the outage catches half-way
        assert during == 0
        assert Job.objects.get(pk=held["id"]).status == "scheduled"
        assert Job.objects.get(pk=waits["id"]).status == "scheduled"
        broker.start()
        status, (retried, _) = enqueue(0, key="retry-me")

        def all_done() -> bool:
            send_dispatch_due(broker.url, queue)
            ids = (held["id"], waits["id"], lost)
            return all(Job.objects.get(pk=i).status in FINISHED for i in ids)

        wait_until(all_done, timeout=90, interval=2)

        # then: the worker outlived the outage (see jobs/kombu_internals.py); every job ran, each
        # once; the retried request got the same job back
        assert worker.running, worker.log()[-3000:]
        assert status == 202, retried
        assert retried["id"] == lost
        for job_id in (held["id"], waits["id"], lost):
            job = Job.objects.get(pk=job_id)
            assert ran_once(job, 2), (job.status, job.attempts, job.log_lines, job.error)
        assert Job.objects.filter(owner=owner).count() == 3
        # and what is delivered late (a restored message, a second dispatch) still does
        # nothing: a minute of the dispatcher later nothing has run again
        send_dispatch_due(broker.url, queue)
        time.sleep(2)
        assert [j.attempts for j in Job.objects.filter(owner=owner)] == [1, 1, 1]
    finally:
        for service in reversed(services):
            service.stop()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_worker_stopped_while_holding_countdown_jobs_leaves_each_to_run_once(
    owner, sig: signal.Signals, shared_env: dict[str, str], log_dir: Path
):
    # given: a worker holding five countdown jobs until their ETA, and (SIGTERM) running one
    queue = f"held-{uuid.uuid4().hex[:8]}"
    env = dict(shared_env, CELERY_TASK_DEFAULT_QUEUE=queue, JOBS_REDISPATCH_AFTER="1")
    first = celery_worker(env, log_dir, name=f"first-{queue}")
    second: Service | None = None
    try:
        now = timezone.now()
        held = [
            Job.objects.create(
                owner=owner, kind="demo.sleep", params={"steps": 2, "max_seconds": 0.05},
                status="scheduled", run_at=now + timedelta(seconds=5), seq=1, dispatched_at=now,
            )
            for _ in range(5)
        ]  # fmt: skip
        for job in held:
            run_job.apply_async((str(job.pk),), task_id=str(job.pk), eta=job.run_at, queue=queue)
        if sig == signal.SIGTERM:
            running = Job.objects.create(
                owner=owner, kind="demo.sleep", params={"steps": 4, "max_seconds": 0.5}, seq=1,
                dispatched_at=now,
            )  # fmt: skip
            run_job.apply_async((str(running.pk),), task_id=str(running.pk), queue=queue)
            wait_until(lambda: Job.objects.get(pk=running.pk).status == "running", timeout=20)
        wait_until(
            lambda: all(f"jobs.run[{job.pk}] received" in first.log() for job in held), timeout=20
        )

        # when: the worker is stopped (warm shutdown) or killed, and another one starts
        first.stop(sig)
        second = celery_worker(env, log_dir, name=f"second-{queue}")

        def all_done() -> bool:
            if sig == signal.SIGKILL:
                # What beat does every 30 s: the messages of a killed worker stay with the
                # broker (Redis: until the visibility timeout), so the dispatcher sends the
                # jobs again once they are late.
                dispatch_due_jobs.apply_async(queue=queue)
            return all(Job.objects.get(pk=job.pk).status in FINISHED for job in held)

        wait_until(all_done, timeout=90, interval=1)

        # then: each job ran, once, not before its time; none is left waiting
        for job in held:
            job.refresh_from_db()
            assert ran_once(job, 2), (job.status, job.attempts, job.log_lines, job.error)
            assert job.started_at is not None
            assert job.started_at >= job.run_at
        if sig == signal.SIGTERM:
            # the warm shutdown let the running job finish, and gave back the held messages
            assert ran_once(Job.objects.get(pk=running.pk), 4)
            assert all(f"jobs.run[{job.pk}] received" in second.log() for job in held)
        time.sleep(2)
        dispatch_due_jobs.apply_async(queue=queue)
        time.sleep(2)
        assert [Job.objects.get(pk=job.pk).attempts for job in held] == [1] * len(held)
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()


@pytest.mark.redis_broker
def test_a_hung_broker_is_a_503_within_its_socket_timeouts(
    owner, tmp_path: Path, shared_env: dict[str, str], log_dir: Path
):
    # given: a server whose Redis broker still accepts connections but answers nothing
    redis = PrivateRedis(tmp_path / "hung").start()
    queue = f"hung-{uuid.uuid4().hex[:8]}"
    env = dict(shared_env, CELERY_BROKER_URL=redis.url, CELERY_TASK_DEFAULT_QUEUE=queue)
    server, url = daphne(env, log_dir)
    assert redis.process is not None
    try:
        job = {"kind": "demo.sleep", "params": {"steps": 1}}
        assert http_json(f"{url}/api/jobs/", method="POST", body=job, headers=auth(owner))[0] == 202

        # when: the broker hangs; a client that gives up after 30 s still gets its answer,
        # as the server's wait is bounded by CELERY_BROKER_SOCKET_TIMEOUT and
        # CELERY_BROKER_CONNECTION_TIMEOUT (without them this request would hang)
        os.kill(redis.process.pid, signal.SIGSTOP)
        status, body, headers = http_json(
            f"{url}/api/jobs/", method="POST", body=job, headers=auth(owner), timeout=30
        )
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
        server.stop()
        redis.stop()

    # then
    assert status == 503, body
    assert body["code"] == "broker_unavailable"
    assert headers["Retry-After"]
