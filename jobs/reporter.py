"""What a running job reports through: progress (coalesced), log lines, cancellation checks."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from . import services


class JobCancelled(Exception):
    """Raised inside a job at a reporter call after someone cancelled it."""


class Reporter:
    """Progress calls may come thousands of times a second: at most one write (and one event)
    per `JOBS_PROGRESS_INTERVAL`, the last value always kept; log lines are never dropped."""

    def __init__(self, job_id: Any) -> None:
        self.job_id = job_id
        self.interval = settings.JOBS_PROGRESS_INTERVAL
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._pending: tuple[int, int, str] | None = None

    def progress(self, current: int, total: int, message: str = "") -> None:
        self._pending = (max(0, int(current)), max(0, int(total)), str(message))
        if time.monotonic() - self._last_write >= self.interval:
            self.flush()
        self.check_cancelled()

    def log(self, line: str) -> None:
        services.job_log_append(job_id=self.job_id, line=str(line))
        self.check_cancelled()

    def flush(self) -> None:
        """Write the latest progress now (also done before the job's final state)."""
        if self._pending is not None:
            current, total, message = self._pending
            self._pending = None
            self._last_write = time.monotonic()
            services.job_progress(job_id=self.job_id, current=current, total=total, message=message)

    def check_cancelled(self) -> None:
        now = time.monotonic()
        if now - self._last_cancel_check < self.interval:
            return
        self._last_cancel_check = now
        if services.job_cancel_requested(job_id=self.job_id):
            raise JobCancelled
