"""What a running job reports through: progress (coalesced), log lines, its output stream,
cancellation checks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from . import selectors, services

logger = logging.getLogger(__name__)

OutputSink = Callable[[list[str]], None]


class JobCancelled(Exception):
    """Raised inside a job at a reporter call after someone cancelled it."""


class Reporter:
    """Progress calls may come thousands of times a second: at most one write (and one event)
    per `JOBS_PROGRESS_INTERVAL`, the last value always kept; log lines are never dropped."""

    def __init__(self, job_id: Any, output_sink: OutputSink | None = None) -> None:
        self.job_id = job_id
        self.interval = settings.JOBS_PROGRESS_INTERVAL
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._pending: tuple[int, int, str] | None = None
        self._output: OutputStream | None = None
        # Where output chunks go: the worker, which writes every job's at once (`jobs.outputs`),
        # or, without one, the database from here.
        self._output_sink = output_sink

    def output(self, text: str) -> None:
        """Append `text` to the job's output stream (a token, a word, a row, ...).

        Returns at once: chunks are written and sent together, at most every
        JOBS_OUTPUT_INTERVAL, by a thread of the job's process. A job writing faster than
        JOBS_OUTPUT_RATE characters a second waits here until it is back under it.
        """
        if self._output is None:
            self._output = OutputStream(self.job_id, self._output_sink)
        self._output.write(str(text))
        self.check_cancelled()

    def progress(self, current: int, total: int, message: str = "") -> None:
        self._pending = (max(0, int(current)), max(0, int(total)), str(message))
        if time.monotonic() - self._last_write >= self.interval:
            self.flush()
        self.check_cancelled()

    def log(self, line: str) -> None:
        services.job_log_append(job_id=self.job_id, line=str(line))
        self.check_cancelled()

    def flush(self) -> None:
        """Write the latest progress and the output not yet written, now (also done before the
        job's final state)."""
        if self._output is not None:
            self._output.flush()
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
        if selectors.job_cancel_requested(job_id=self.job_id):
            raise JobCancelled


class OutputStream:
    """A job's output chunks on their way to the database and the job's subscribers.

    The job's thread appends; a daemon thread hands on what has gathered every
    JOBS_OUTPUT_INTERVAL, at once: to the worker (`sink`), which writes all its jobs' output in
    one transaction, or else to the database itself. A job writing a token at a time costs one
    hand-over per interval, not per token, and its output still arrives within one or two.
    """

    def __init__(self, job_id: Any, sink: OutputSink | None = None) -> None:
        self.job_id = job_id
        self.sink = sink
        self.interval = settings.JOBS_OUTPUT_INTERVAL
        self.rate = settings.JOBS_OUTPUT_RATE
        self.chunks: list[str] = []
        self.lock = threading.Lock()
        self.flushing = threading.Lock()  # one write at a time, in order
        self.budget = float(self.rate)
        self.refilled = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="job-output", daemon=True)
        self.thread.start()

    def write(self, text: str) -> None:
        if not text:
            return
        self._spend(len(text))
        with self.lock:
            self.chunks.append(text)

    def _spend(self, size: int) -> None:
        """Wait while the job is over its rate (a token bucket a second deep)."""
        while True:
            now = time.monotonic()
            self.budget = min(float(self.rate), self.budget + (now - self.refilled) * self.rate)
            self.refilled = now
            if self.budget >= min(size, self.rate):
                self.budget -= size
                return
            time.sleep((min(size, self.rate) - self.budget) / self.rate)

    def flush(self) -> None:
        with self.flushing:
            with self.lock:
                chunks, self.chunks = self.chunks, []
            if not chunks:
                return
            try:
                if self.sink is not None:
                    self.sink(chunks)
                else:
                    services.job_output_append(job_id=self.job_id, chunks=chunks)
            except BaseException:
                with self.lock:  # kept, in order, for the next write
                    self.chunks[:0] = chunks
                raise

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # the next round writes them; the final flush raises
                logger.exception("job %s: output not written yet", self.job_id)
