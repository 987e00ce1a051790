"""A job's state as clients see it: REST's body is what `JobState` declares, in every status."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.frames import job_state_body, job_state_model
from jobs.models import Job
from jobs.services import (
    job_cancel,
    job_claim,
    job_enqueue,
    job_fail,
    job_log_append,
    job_progress,
    job_succeed,
)
from realtime.kernel import events
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SLEEP: dict[str, Any] = {"kind": "demo.sleep", "params": {"steps": 2, "max_seconds": 0.5}}


def scheduled(job: Job) -> None:
    pass


def running(job: Job) -> None:
    job_claim(job_id=str(job.pk))
    job_progress(job_id=job.pk, current=1, total=2, message="half way é")
    job_log_append(job_id=job.pk, line="Going to sleep for 0.5 second")


def succeeded(job: Job) -> None:
    job_claim(job_id=str(job.pk))
    job_succeed(job_id=job.pk, result={"steps": 2, "slept_seconds": 0.75, "nested": [1, None]})


def failed(job: Job) -> None:
    job_claim(job_id=str(job.pk))
    job_fail(job_id=job.pk, error_type="ValueError", message="went wrong")


def cancelled(job: Job) -> None:
    job_cancel(job=job)


@pytest.mark.parametrize("reach", [scheduled, running, succeeded, failed, cancelled])
def test_a_jobs_body_is_what_its_declared_state_gives(reach):
    # given
    job, _ = job_enqueue(owner=UserFactory.create(), **SLEEP, countdown=60)
    reach(job)
    job.refresh_from_db()

    # when
    body = job_state_body(job)

    # then: field for field and in order, what the model validates it to and dumps
    declared = events.JobState.model_validate(body).model_dump(mode="json")
    assert list(body.items()) == list(declared.items())
    assert job_state_model(job) == events.JobState.model_validate(body)


def test_a_job_just_written_has_the_same_body_as_when_read_back():
    # the row as `create` left it (status as a choices member) and as read from the database
    job, _ = job_enqueue(owner=UserFactory.create(), **SLEEP, countdown=60)

    assert job_state_body(job) == job_state_body(Job.objects.get(pk=job.pk))
    assert type(job_state_body(job)["status"]) is str
