"""Waiting for jobs that real workers run."""

from __future__ import annotations

from typing import Any

from jobs.models import FINISHED, Job

from .processes import wait_until


def finished(job_id: Any, timeout: float = 30) -> Job:
    """The job once it is succeeded, failed or cancelled (AssertionError after `timeout`)."""
    return wait_until(
        lambda: (job := Job.objects.get(pk=job_id)).status in FINISHED and job,
        timeout=timeout,
        interval=0.1,
    )
