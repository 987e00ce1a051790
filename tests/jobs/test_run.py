"""Jobs on real Celery worker processes: countdown, progress, log, cancel, crashes, dead broker."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from jobs.models import Job
from jobs.services import job_enqueue, jobs_dispatch_due
from jobs.tasks import reap_expired_jobs, run_job
from tests.factories import UserFactory
from tests.support.jobs import finished
from tests.support.processes import celery_worker, daphne, http_json, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner():
    return UserFactory.create(username="owner")


def test_demo_sleep_waits_its_countdown_then_reports_progress_and_log(api, worker):
    # when
    body = api.post(
        "/api/jobs/",
        {"kind": "demo.sleep", "params": {"steps": 3, "max_seconds": 0.05}, "countdown": 1.5},
        format="json",
    ).json()
    seen_scheduled = api.get(f"/api/jobs/{body['id']}/").json()["status"]
    job = finished(body["id"])

    # then
    assert seen_scheduled == "scheduled"
    assert job.status == "succeeded", job.error
    assert job.started_at is not None
    assert job.run_at - job.created_at == timedelta(seconds=1.5)
    assert job.started_at >= job.run_at  # not before its countdown was over
    assert (job.progress_current, job.progress_total) == (3, 3)
    assert (job.result or {}).get("steps") == 3
    log = api.get(f"/api/jobs/{body['id']}/log/").json()
    assert log["log_lines"] == 3
    assert [line["number"] for line in log["results"]] == [1, 2, 3]
    assert all(line["line"].startswith("Going to sleep for ") for line in log["results"])
    assert api.get(f"/api/jobs/{body['id']}/log/?after=2").json()["results"][0]["number"] == 3


def test_cancelling_a_running_job_stops_it_at_its_next_report(api, worker):
    job_id = api.post(
        "/api/jobs/",
        {"kind": "demo.sleep", "params": {"steps": 100, "max_seconds": 0.1}},
        format="json",
    ).json()["id"]
    wait_until(lambda: Job.objects.get(pk=job_id).progress_current >= 2, timeout=20)

    response = api.post(f"/api/jobs/{job_id}/cancel/")
    job = finished(job_id)

    assert response.status_code == 200
    assert response.json()["cancel_requested"] is True
    assert job.status == "cancelled"
    assert job.progress_current < 100
    assert api.post(f"/api/jobs/{job_id}/cancel/").json()["code"] == "not_cancellable"


def test_a_worker_killed_mid_job_does_not_leave_it_running(
    api, owner, worker, shared_env: dict[str, str], log_dir: Path
):
    # given: a second worker with a short lease, on its own queue, running a long job
    queue = "doomed-" + shared_env["CELERY_TASK_DEFAULT_QUEUE"]
    env = dict(shared_env, JOBS_LEASE_SECONDS="2", CELERY_TASK_DEFAULT_QUEUE=queue)
    doomed = celery_worker(env, log_dir, name="doomed")
    job = Job.objects.create(
        owner=owner, kind="demo.sleep", params={"steps": 50, "max_seconds": 0.2}
    )
    run_job.apply_async((str(job.pk),), task_id=str(job.pk), queue=queue)
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "running", timeout=20)

    # when: SIGKILL, then the periodic reaper runs once the lease is over
    doomed.stop(signal.SIGKILL)
    wait_until(
        lambda: (Job.objects.get(pk=job.pk).lease_expires_at or timezone.now()) < timezone.now(),
        timeout=10,
    )
    reap_expired_jobs.delay()

    # then
    job = finished(str(job.pk))
    assert job.status == "failed"
    assert job.error == {"type": "WorkerLost", "message": "The worker running this job stopped."}
    assert api.get(f"/api/jobs/{job.pk}/").json()["status"] == "failed"


def test_a_dead_broker_is_a_503_and_leaves_no_job_looking_queued(
    owner, shared_env: dict[str, str], log_dir: Path
):
    # given: a server whose broker does not answer
    server, url = daphne(dict(shared_env, CELERY_BROKER_URL="redis://127.0.0.1:1/0"), log_dir)
    token = Token.objects.create(user=owner).key
    try:
        # when
        status, body, headers = http_json(
            f"{url}/api/jobs/",
            method="POST",
            body={"kind": "demo.sleep", "params": {"steps": 1}},
            headers={"Authorization": f"Token {token}"},
            timeout=30,
        )
    finally:
        server.stop()

    # then
    assert status == 503
    assert body["code"] == "broker_unavailable"
    assert headers["Retry-After"]
    assert list(Job.objects.values_list("status", flat=True)) == ["failed"]
    assert (Job.objects.get().error or {}).get("type") == "BrokerUnavailable"


def test_a_duplicate_delivery_of_the_same_task_id_runs_once(owner, worker):
    # given
    job, _ = job_enqueue(
        owner=owner, kind="demo.sleep", params={"steps": 3, "max_seconds": 0.05}, countdown=0.5
    )

    # when: the same task id is delivered again, as a broker redelivery would
    run_job.apply_async((str(job.pk),), task_id=str(job.pk))
    job = finished(str(job.pk))

    # then
    assert job.status == "succeeded"
    assert job.attempts == 1
    assert job.log_lines == 3


@pytest.mark.redis_broker
def test_a_countdown_longer_than_the_visibility_timeout_runs_once(
    owner, shared_env: dict[str, str], log_dir: Path
):
    # given: a worker whose Redis broker redelivers unacknowledged messages after 1 s
    queue = "short-visibility-" + shared_env["CELERY_TASK_DEFAULT_QUEUE"]
    env = dict(
        shared_env,
        CELERY_VISIBILITY_TIMEOUT="1",
        CELERY_UNACKED_RESTORE_INTERVAL="1",
        CELERY_TASK_DEFAULT_QUEUE=queue,
    )
    short = celery_worker(env, log_dir, name="short-visibility")
    try:
        job = Job.objects.create(
            owner=owner, kind="demo.sleep", params={"steps": 2, "max_seconds": 0}, seq=1,
            status="scheduled", run_at=timezone.now() + timedelta(seconds=4),
        )  # fmt: skip
        # when
        run_job.apply_async((str(job.pk),), task_id=str(job.pk), eta=job.run_at, queue=queue)
        job = finished(str(job.pk))
    finally:
        short.stop()

    # then: the broker did deliver it again, and it still ran once
    assert short.log().count(f"jobs.run[{job.pk}] received") >= 2
    assert job.status == "succeeded"
    assert job.attempts == 1
    assert job.log_lines == 2
    assert job.started_at is not None
    assert job.started_at >= job.run_at


def test_a_long_countdown_waits_in_the_database_until_the_dispatcher_sends_it(
    owner, worker, settings
):
    # given: jobs more than 1 s ahead are not handed to the broker yet
    settings.JOBS_BROKER_MAX_DELAY = 1
    job, _ = job_enqueue(
        owner=owner, kind="demo.sleep", params={"steps": 1, "max_seconds": 0}, countdown=3
    )
    assert Job.objects.get(pk=job.pk).dispatched_at is None
    assert jobs_dispatch_due() == 0  # not yet within the window

    # when: beat's dispatcher runs once the job is near
    wait_until(lambda: (job.run_at - timezone.now()).total_seconds() < 1, timeout=10)
    sent = jobs_dispatch_due()
    done = finished(str(job.pk))

    # then
    assert sent == 1
    assert jobs_dispatch_due() == 0  # sent once
    assert done.status == "succeeded"
    assert done.started_at is not None
    assert done.started_at >= done.run_at
