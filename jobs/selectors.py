"""Reads of the jobs domain."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet

from realtime import events

from .models import Job, JobLogLine

LOG_PAGE_MAX = 500


def job_get(*, job_id: Any, viewer: User) -> Job | None:
    """The job if `viewer` may see it (its owner, or staff); None otherwise, as if unknown."""
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:  # not a UUID: unknown, like any other id
        return None
    jobs = Job.objects.all() if viewer.is_staff else Job.objects.filter(owner=viewer)
    return jobs.filter(pk=key).first()


def job_list(*, owner: User, status: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.filter(owner=owner)
    return jobs.filter(status=status) if status else jobs


def job_log(*, job: Job, after: int = 0, limit: int = 100) -> list[JobLogLine]:
    limit = max(1, min(limit, LOG_PAGE_MAX))
    return list(JobLogLine.objects.filter(job=job, number__gt=after).order_by("number")[:limit])


def job_state(job: Job) -> dict[str, Any]:
    """The job's full state as JSON: the REST body."""
    return events.dump(job_state_model(job))


def job_state_model(job: Job) -> events.JobState:
    """The job's full state: what REST returns and `job.update` carries."""

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return events.JobState(
        id=str(job.id),
        kind=job.kind,
        status=job.status,  # type: ignore[arg-type]
        params=job.params,
        progress=events.JobProgress(
            current=job.progress_current,
            total=job.progress_total,
            message=job.progress_message,
        ),
        result=job.result,
        error=events.JobError(**job.error) if job.error else None,
        created_at=job.created_at.isoformat(),
        run_at=job.run_at.isoformat(),
        started_at=iso(job.started_at),
        finished_at=iso(job.finished_at),
        attempts=job.attempts,
        seq=job.seq,
        cancel_requested=job.cancel_requested,
        log_lines=job.log_lines,
    )
