"""Reads of the jobs domain: who sees a job, lists, log pages, and what changed since when."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs.frames import job_state_body
from jobs.models import Job, JobStatus
from jobs.selectors import LOG_PAGE_MAX, job_get, job_list, job_log, jobs_changed_since
from jobs.services import job_claim, job_enqueue, job_log_append
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SLEEP: dict[str, Any] = {"kind": "demo.sleep", "params": {"steps": 1, "max_seconds": 0}}


@pytest.fixture
def owner():
    return UserFactory.create()


def test_a_job_is_seen_by_its_owner_and_staff_only(owner):
    job, _ = job_enqueue(owner=owner, **SLEEP, countdown=60)
    staff = UserFactory.create(is_staff=True)

    assert job_get(job_id=job.pk, viewer=owner) == job
    assert job_get(job_id=str(job.pk), viewer=staff) == job
    assert job_get(job_id=job.pk, viewer=UserFactory.create()) is None


@pytest.mark.parametrize("job_id", ["not-a-uuid", "", None, 42, str(uuid.uuid4())])
def test_an_id_that_names_no_job_is_none(owner, job_id):
    assert job_get(job_id=job_id, viewer=owner) is None


def test_job_list_is_the_owners_newest_first_and_filters_by_status(owner):
    first, _ = job_enqueue(owner=owner, **SLEEP, countdown=60)
    second, _ = job_enqueue(owner=owner, **SLEEP)
    job_enqueue(owner=UserFactory.create(), **SLEEP)

    assert ids(job_list(owner=owner)) == [second.pk, first.pk]
    assert ids(job_list(owner=owner, status=JobStatus.SCHEDULED)) == [first.pk]
    assert ids(job_list(owner=owner, status=JobStatus.RUNNING)) == []


def ids(rows) -> list[uuid.UUID]:
    return [row.id for row in rows]


def test_job_list_rows_give_each_job_its_state(owner):
    # given
    job, _ = job_enqueue(owner=owner, **SLEEP, countdown=60)
    job_claim(job_id=str(job.pk))
    job_log_append(job_id=job.pk, line="one")

    # when
    (row,) = job_list(owner=owner)

    # then: a row gives the body its model gives
    assert job_state_body(row) == job_state_body(Job.objects.get(pk=job.pk))


def test_job_log_pages_by_line_number(owner):
    job, _ = job_enqueue(owner=owner, **SLEEP)
    job_claim(job_id=str(job.pk))
    for n in range(1, 8):
        job_log_append(job_id=job.pk, line=f"line {n}")

    def numbers(**window: int) -> list[int]:
        return [line.number for line in job_log(job=job, **window)]

    assert numbers() == [1, 2, 3, 4, 5, 6, 7]
    assert numbers(after=5) == [6, 7]
    assert numbers(after=2, limit=2) == [3, 4]
    assert numbers(limit=0) == [1]  # at least one
    assert numbers(after=7) == []


def test_job_log_pages_are_bounded(owner):
    job, _ = job_enqueue(owner=owner, **SLEEP)
    job_claim(job_id=str(job.pk))
    for n in range(LOG_PAGE_MAX + 3):
        job_log_append(job_id=job.pk, line=str(n))

    assert len(job_log(job=job, limit=LOG_PAGE_MAX + 3)) == LOG_PAGE_MAX


def test_jobs_changed_since_finds_each_kind_of_change(owner, settings):
    # given: jobs stamped before and after `since` in each of the ways a change is stamped
    since = timezone.now()
    before, after = since - timedelta(hours=1), since + timedelta(seconds=1)
    lease = timedelta(seconds=settings.JOBS_LEASE_SECONDS)

    def job(name: str, **fields: Any) -> Job:
        return Job.objects.create(
            owner=owner, kind="demo.sleep", params={"name": name},
            **{"created_at": before, "run_at": before, **fields},
        )  # fmt: skip

    running, done = JobStatus.RUNNING, JobStatus.SUCCEEDED
    changed = {
        job("enqueued", created_at=after, run_at=after),
        job("claimed", status=running, started_at=after, lease_expires_at=after + lease),
        job("reported", status=running, started_at=before, lease_expires_at=after + lease),
        job("finished", status=done, finished_at=after),
        job("queued again", status=JobStatus.QUEUED, run_at=after),
        job("cancel asked", status=running, cancel_requested=True, started_at=before),
    }
    job("untouched", status=done, finished_at=before)
    job("reported before", status=running, started_at=before, lease_expires_at=before + lease)
    job("stopped after a cancel", status=JobStatus.CANCELLED, cancel_requested=True,
        finished_at=before)  # fmt: skip
    Job.objects.create(owner=UserFactory.create(), kind="demo.sleep", created_at=after)

    # when
    found = jobs_changed_since(owner_id=owner.pk, since=since, limit=100)

    # then
    assert {job.params["name"] for job in found} == {job.params["name"] for job in changed}


def test_jobs_changed_since_returns_the_newest_up_to_the_limit(owner):
    since = timezone.now()
    jobs = [
        Job.objects.create(owner=owner, kind="demo.sleep", created_at=since + timedelta(seconds=n))
        for n in range(5)
    ]

    found = jobs_changed_since(owner_id=owner.pk, since=since, limit=3)

    assert found == [jobs[4], jobs[3], jobs[2]]
