"""A worker's one writer of its running jobs' output.

Each job's process hands its output chunks to the worker (on the pipe `jobs.runner` watches
it through) every JOBS_OUTPUT_INTERVAL. Had each process written its own, twenty jobs
streaming at once would be twenty writers: a thousand small transactions a second, and on
SQLite, which has one write lock, each process backing off up to 100 ms at a time while
another held it (bench.jobstream measured a p99 of 6.4 s so). Here one thread of the worker
writes what all of them handed on meanwhile in one transaction, then hands every job's frame
to the process's publishing loop at once, which pipelines them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from realtime.kernel.broadcast import held, publish_soon

from . import services

logger = logging.getLogger(__name__)

# How long `flush` waits for a job's output to be written before it gives up on it.
FLUSH_TIMEOUT = 30.0


class OutputWriter:
    """Gathers chunks by job and writes them all at once, at most twice per
    JOBS_OUTPUT_INTERVAL."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.pending: defaultdict[Any, list[str]] = defaultdict(list)
        self.writing: set[Any] = set()  # jobs whose chunks are being written now
        self.thread: threading.Thread | None = None

    def put(self, job_id: Any, chunks: list[str]) -> None:
        """Queue a job's chunks, in order after the ones it queued before."""
        with self.lock:
            self.pending[job_id].extend(chunks)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="job-outputs", daemon=True)
                self.thread.start()
            self.lock.notify_all()

    def flush(self, job_id: Any) -> None:
        """Wait until what the job queued is written (before its final state is)."""
        deadline = time.monotonic() + FLUSH_TIMEOUT
        with self.lock:
            while job_id in self.pending or job_id in self.writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.error("job %s: its last output was not written in time", job_id)
                    return
                self.lock.wait(left)

    def _run(self) -> None:
        # Two rounds per interval at most: a chunk that missed a round waits half an interval
        # for the next, not a whole one on top of the interval its job held it for.
        gap = settings.JOBS_OUTPUT_INTERVAL / 2
        while True:
            with self.lock:
                while not self.pending:
                    self.lock.wait()
                batches, self.pending = dict(self.pending), defaultdict(list)
                self.writing = set(batches)
            started = time.monotonic()
            try:
                close_old_connections()
                with held() as events:  # sent together once committed, not one by one
                    services.jobs_output_append(batches=batches)
                publish_soon(events)
            except Exception:
                logger.exception("jobs' output not written; trying again")
                with self.lock:  # kept, in order before anything queued since
                    for job_id, chunks in batches.items():
                        self.pending[job_id][:0] = chunks
                time.sleep(gap * 20)
            finally:
                with self.lock:
                    self.writing = set()
                    self.lock.notify_all()
            time.sleep(max(0.0, gap - (time.monotonic() - started)))


WRITER = OutputWriter()
