"""A due job waiting for a worker knows its place in the queue and about when it starts;
beat's round (`jobs_queue_positions`, every second) pushes it only when it changed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs.models import Job, JobAttempt, JobStatus
from jobs.services import job_cancel, job_claim, job_enqueue, jobs_queue_positions

pytestmark = pytest.mark.django_db


def queued(owner: Any, n: int) -> list[Job]:
    """`n` due jobs, due one after another (no worker: their messages go to the test queue)."""
    jobs = []
    for _ in range(n):
        job, _ = job_enqueue(owner=owner, kind="demo.sleep", params={}, countdown=3600)
        jobs.append(job)
    due = timezone.now() - timedelta(seconds=10)
    for index, job in enumerate(jobs):
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.QUEUED, run_at=due + timedelta(milliseconds=index)
        )
    return jobs


def places(jobs: list[Job]) -> list[int | None]:
    return [Job.objects.get(pk=job.pk).queue_position for job in jobs]


def test_due_jobs_are_numbered_in_the_order_they_became_due(owner):
    jobs = queued(owner, 3)
    later, _ = job_enqueue(owner=owner, kind="demo.sleep", params={}, countdown=3600)

    changed = jobs_queue_positions()

    assert changed == 3
    assert places(jobs) == [1, 2, 3]
    assert Job.objects.get(pk=later.pk).queue_position is None  # not due yet


def test_the_estimate_counts_rounds_of_recent_job_durations(owner):
    jobs = queued(owner, 3)
    now = timezone.now()
    for seconds in (4, 4, 100):  # median 4 s
        finished = Job.objects.create(owner=owner, kind="demo.sleep", status="succeeded")
        JobAttempt.objects.create(
            job=finished,
            number=1,
            status="succeeded",
            started_at=now - timedelta(seconds=seconds),
            finished_at=now,
        )

    jobs_queue_positions(now=now)

    estimates = [Job.objects.get(pk=job.pk).estimated_start_at for job in jobs]
    assert [(e - now).total_seconds() for e in estimates if e] == [4, 8, 12]  # one at a time


def test_a_position_is_pushed_when_it_changes_and_only_then(owner):
    jobs = queued(owner, 3)
    jobs_queue_positions()
    seqs = [Job.objects.get(pk=job.pk).seq for job in jobs]

    unchanged = jobs_queue_positions()  # the next second, nothing moved
    job_claim(job_id=str(jobs[0].pk))  # the first one starts
    job_cancel(job=Job.objects.get(pk=jobs[1].pk))  # the second is cancelled
    moved = jobs_queue_positions()

    assert unchanged == 0
    assert [Job.objects.get(pk=job.pk).seq for job in jobs[2:]] == [seqs[2] + 1]
    assert moved == 1
    assert places(jobs) == [None, None, 1]
    started = Job.objects.get(pk=jobs[0].pk)
    assert (started.status, started.queue_position, started.estimated_start_at) == (
        "running",
        None,
        None,
    )


def test_rest_shows_the_place_and_the_estimate(owner, api):
    (job,) = queued(owner, 1)
    jobs_queue_positions()

    body = api.get(f"/api/jobs/{job.pk}/").json()

    assert body["queue_position"] == 1
    assert body["estimated_start_at"] is not None
