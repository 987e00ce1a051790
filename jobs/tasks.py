"""Celery tasks: thin interfaces that take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task

from realtime.kernel import logcontext

from .models import Job
from .registry import kind_get
from .runner import attempt_run
from .services import (
    job_claim,
    job_fail,
    job_mark_cancelled,
    job_succeed,
    jobs_dispatch_due,
    jobs_queue_positions,
    jobs_reap_expired,
)

logger = logging.getLogger(__name__)


@shared_task(name="jobs.run")
def run_job(job_id: str) -> None:
    """Claim the job's next attempt and run it in a process of its own; a delivery that cannot
    claim it (a duplicate, a cancelled job, a retry not due yet) does nothing."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    # The job's log lines here name it, and the request that enqueued it.
    with logcontext.bound(job_id=str(job.pk), request_id=job.request_id or None):
        _run_attempt(job)


def _run_attempt(job: Job) -> None:
    job_kind = kind_get(job.kind)
    if job_kind is None:
        job_fail(job_id=job.pk, error_type="LookupError", message=f"No job kind {job.kind!r}.")
        return
    logger.info("job %s (%s): attempt %d started", job.pk, job.kind, job.attempts)
    outcome = attempt_run(job, job_kind)
    logger.info("job %s (%s): attempt %d %s", job.pk, job.kind, job.attempts, outcome.status)
    if outcome.status == "succeeded":
        job_succeed(job_id=job.pk, result=outcome.result)
    elif outcome.status == "cancelled":
        job_mark_cancelled(job_id=job.pk)
    else:
        job_fail(
            job_id=job.pk,
            error_type=outcome.error_type,
            message=outcome.message,
            retryable=outcome.retryable,
        )


@shared_task(name="jobs.dispatch_due")
def dispatch_due_jobs() -> int:
    """Send the Celery messages of long-countdown jobs whose time is near."""
    return jobs_dispatch_due()


@shared_task(name="jobs.queue_positions")
def queue_positions() -> int:
    """Give due, waiting jobs their place in the queue and an estimated start (every second)."""
    return jobs_queue_positions()


@shared_task(name="jobs.reap_expired")
def reap_expired_jobs() -> int:
    """Retry or fail running jobs whose worker died (no lease renewal)."""
    return jobs_reap_expired()
