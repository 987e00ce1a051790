"""The enqueue rate is the jobs domain's: one budget per user, over REST and `manage.py enqueue`."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from rest_framework.test import APIClient

from jobs.errors import JobError, JobErrorCode
from jobs.models import Job
from jobs.services import job_enqueue
from tests.factories import UserFactory
from tests.support.processes import BASE_DIR

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_rate_counters"),
]

LATER = {"kind": "demo.sleep", "params": {"steps": 1}, "countdown": 3600}


def enqueue_command(env: dict[str, str], user: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "enqueue", "demo.sleep", "-p", "steps=1",
         "--countdown", "3600", "--user", user],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_rest_and_the_command_spend_one_budget_per_user(settings, shared_env):
    # given: three enqueues an hour, for this process and for the command's
    settings.JOBS_ENQUEUE_RATE = "3/hour"
    env = dict(shared_env, JOBS_ENQUEUE_RATE="3/hour")
    owner = UserFactory.create()
    api = APIClient()
    api.force_authenticate(owner)

    # when: two over REST, one with the command, then one more each way
    rest = [api.post("/api/jobs/", LATER, format="json").status_code for _ in range(2)]
    command = enqueue_command(env, owner.username)
    refused_rest = api.post("/api/jobs/", LATER, format="json")
    refused_command = enqueue_command(env, owner.username)

    # then
    assert rest == [202, 202]
    assert command.returncode == 0, command.stderr
    assert refused_rest.status_code == 429
    assert refused_rest.json()["code"] == "rate_limited"
    assert 1 <= int(refused_rest["Retry-After"]) <= 3600
    assert refused_command.returncode != 0
    assert "rate_limited: Too many jobs; try again in " in refused_command.stderr
    assert Job.objects.filter(owner=owner).count() == 3


def test_the_rate_is_checked_after_the_request_itself(settings):
    # given: one enqueue an hour
    settings.JOBS_ENQUEUE_RATE = "1/hour"
    owner = UserFactory.create()

    # when: refused for an unknown kind and for bad params, then a good one, then another
    for kind, params in (("no.such.kind", {}), ("demo.sleep", {"steps": 10_000})):
        with pytest.raises(JobError):
            job_enqueue(owner=owner, kind=kind, params=params, countdown=3600)
    job_enqueue(owner=owner, kind="demo.sleep", params={"steps": 1}, countdown=3600)
    with pytest.raises(JobError) as refused:
        job_enqueue(owner=owner, kind="demo.sleep", params={"steps": 1}, countdown=3600)

    # then: the refused requests spent nothing; the second good one is over the rate
    assert refused.value.code == JobErrorCode.RATE_LIMITED
    assert refused.value.retry_after is not None
    assert Job.objects.filter(owner=owner).count() == 1


def test_a_replay_with_the_same_idempotency_key_spends_no_budget(settings):
    # given: one enqueue an hour, spent on a keyed request
    settings.JOBS_ENQUEUE_RATE = "1/hour"
    owner = UserFactory.create()
    sleep: dict[str, Any] = {"kind": "demo.sleep", "params": {"steps": 1}, "countdown": 3600}
    first, created = job_enqueue(owner=owner, idempotency_key="k1", **sleep)

    # when: the client, not having heard back, sends it again twice; then a new request
    replays = [job_enqueue(owner=owner, idempotency_key="k1", **sleep) for _ in "ab"]
    with pytest.raises(JobError) as new_request:
        job_enqueue(owner=owner, idempotency_key="k2", **sleep)

    # then: each replay is answered with the first job, not refused; the new one is over the rate
    assert created
    assert [(job.pk, again) for job, again in replays] == [(first.pk, False)] * 2
    assert new_request.value.code == JobErrorCode.RATE_LIMITED
    assert Job.objects.filter(owner=owner).count() == 1
