"""Celery tasks: thin interfaces that take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task

from .registry import kind_get
from .reporter import JobCancelled, Reporter
from .services import (
    job_claim,
    job_fail,
    job_mark_cancelled,
    job_succeed,
    jobs_dispatch_due,
    jobs_reap_expired,
)

logger = logging.getLogger(__name__)


@shared_task(name="jobs.run")
def run_job(job_id: str) -> None:
    """Claim the job and run its kind; a delivery that cannot claim it does nothing."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    job_kind = kind_get(job.kind)
    reporter = Reporter(job.pk)
    try:
        if job_kind is None:
            raise LookupError(f"unknown job kind {job.kind!r}")
        params = job_kind.params.model_validate(job.params)
        result = job_kind.run(job, params, reporter)
        reporter.flush()
    except JobCancelled:
        reporter.flush()
        job_mark_cancelled(job_id=job.pk)
    except Exception as exc:
        logger.exception("job %s (%s) failed", job.pk, job.kind)
        reporter.flush()
        job_fail(job_id=job.pk, error_type=type(exc).__name__, message=str(exc))
    else:
        job_succeed(job_id=job.pk, result=result)


@shared_task(name="jobs.dispatch_due")
def dispatch_due_jobs() -> int:
    """Send the Celery messages of long-countdown jobs whose time is near."""
    return jobs_dispatch_due()


@shared_task(name="jobs.reap_expired")
def reap_expired_jobs() -> int:
    """Fail running jobs whose worker died (no lease renewal)."""
    return jobs_reap_expired()
