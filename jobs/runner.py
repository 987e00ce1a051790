"""One attempt of a job, run in a process of its own so that it can always be stopped.

A job's code may never call its reporter (a blocking call, a busy loop in C): a cancel that
only asks would then never end it, and neither would a time limit. So the worker's task
forks a child for each attempt and watches it:

- a cancel is asked first: the job's reporter raises `JobCancelled` at its next call; after
  the kind's grace the worker sends the child SIGUSR1, which raises `JobCancelled` wherever
  its Python code is (a `time.sleep` included), and JOBS_KILL_AFTER seconds later SIGKILL;
- the soft time limit raises `TimeLimitExceeded` in the job (SIGALRM); at the hard limit
  the child is killed and the attempt fails with that error;
- the worker renews the job's lease while the child runs, and the child ends itself when
  its pipe to the worker closes, so a killed worker leaves nothing running behind it.

The children come from a fork server (multiprocessing's `forkserver`), one per worker
process, which loaded Django and the kinds once (`jobs.job_process`) and never opened a
database: a child starts in milliseconds, and starts clean. The server and the children
ignore SIGTERM and SIGINT: a stop of the whole stack (a process manager signalling every
process, a ^C to the process group) is the worker's to act on, and a warm shutdown lets the
running jobs finish. Forking the worker itself would
copy its threads' state, and SQLite's own record of the locks the worker holds on the
database file, which the SQLite documentation warns makes a child's locking go wrong (we saw
"database is locked" in jobs run so). Celery's own `terminate` and time limits were not used:
they work only with the prefork pool, stop the pool process (and whatever else it was doing)
and cannot say `cancelled` from `failed`. The worker runs every bookkeeping step (claim,
attempts, retries, the final state); the child runs the kind and reports back on the pipe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from multiprocessing.process import AuthenticationString  # type: ignore[attr-defined]
from typing import Any

from django.conf import settings
from django.db import connection, connections
from pydantic import BaseModel

from realtime.kernel import logcontext

from . import services
from .models import Job
from .outputs import WRITER
from .registry import JobKind, TimeLimitExceeded, WorkerLost
from .reporter import JobCancelled, Reporter

logger = logging.getLogger(__name__)

# How often the worker looks at a running job's cancel flag; its lease is renewed every
# quarter of JOBS_LEASE_SECONDS.
WATCH_INTERVAL = 0.25
# How long a child that has reported its outcome may take to exit before it is killed.
EXIT_WAIT = 5.0
# What a process manager or a terminal sends to stop the worker: not the job processes' to act on.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What the worker sends a job's process when its cancel grace is over: `JobCancelled` in it.
STOP_JOB = signal.SIGUSR1

_PROCESSES = multiprocessing.get_context("forkserver")
# Imported once by the fork server: Django set up, every kind registered.
_PROCESSES.set_forkserver_preload(["jobs.job_process"])


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: `succeeded` (with its result), `cancelled`, or `failed`."""

    status: str
    result: dict[str, Any] | None = None
    error_type: str = ""
    message: str = ""
    retryable: bool = False


def attempt_run(job: Job, kind: JobKind) -> Outcome:
    """Run one attempt of `job` in a child process and wait for it, stopping it when it must."""
    forkserver.ensure_running()  # started with the worker (`fork_server_start`); again if it died
    _may_have_children()
    receiving, sending = _PROCESSES.Pipe()
    # The databases as this process uses them, which may differ from the settings the fork
    # server read at its start (a test run's database is named at run time).
    databases = {alias: dict(connections[alias].settings_dict) for alias in connections}
    child = _PROCESSES.Process(
        target=_child, args=(str(job.pk), kind.name, databases, sending), name=f"job {job.pk}"
    )
    child.start()
    sending.close()
    try:
        outcome = _watch(job, kind, child, receiving)
        WRITER.flush(job.pk)  # all its output is written before its final state
        return outcome
    finally:
        receiving.close()  # the child, if it still runs, ends itself when it sees this
        if child.is_alive():
            child.kill()
        child.join()
        child.close()


def fork_server_start() -> None:
    """Start this process's fork server, from its main thread, as the worker starts.

    The server ignores SIGTERM and SIGINT from its first instruction on: it is started with
    both ignored, which a new program keeps (handlers are reset, ignored signals stay so).
    Only the main thread may change how signals are handled; for the millisecond the server
    takes to start, the worker ignores them too. Started later, from a task's thread (if it
    died), it ignores them once `jobs.job_process` runs, a second or so after it starts.
    """
    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    handlers = {stop: signal.signal(stop, signal.SIG_IGN) for stop in STOP_SIGNALS}
    try:
        forkserver.ensure_running()
    finally:
        for stop, handler in handlers.items():
            signal.signal(stop, handler)


def _may_have_children() -> None:
    """Make a prefork pool's process (billiard's) one that multiprocessing lets start children.

    It is marked daemonic, and multiprocessing lets no daemonic process start a child, which
    would outlive it; a job's process does not (it ends when its pipe to this one closes). And
    its key is billiard's kind, which multiprocessing refuses to hand to the fork server.
    """
    current = multiprocessing.current_process()
    if current.daemon:
        current.daemon = False
    if type(current.authkey) is not AuthenticationString:
        # Its `authkey` setter is billiard's too, and would wrap the new key in billiard's kind.
        current._config["authkey"] = AuthenticationString(os.urandom(32))  # type: ignore[attr-defined]


def _watch(job: Job, kind: JobKind, child: Any, receiving: Connection) -> Outcome:
    started = time.monotonic()
    hard_limit = kind.time_limit or settings.JOBS_TIME_LIMIT
    grace = kind.cancel_grace if kind.cancel_grace is not None else settings.JOBS_CANCEL_GRACE
    renew_every = settings.JOBS_LEASE_SECONDS / 4
    renewed = started
    cancel_seen: float | None = None
    terminated: float | None = None
    stopped_for: str | None = None  # "cancel" or "time", once the worker stops the child
    outcome: Outcome | None = None
    # The pipe brings the child's output chunks, then says when it ends: with its outcome, or
    # closed (no other process holds its end). Its `sentinel` comes through the fork server,
    # which may be gone.
    watched = started
    while outcome is None:
        if wait([receiving], timeout=WATCH_INTERVAL):
            try:
                message = receiving.recv()
            except (EOFError, OSError):  # it died without a word
                break
            if isinstance(message, Outcome):
                outcome = message
                break
            WRITER.put(job.pk, message)  # output chunks
        now = time.monotonic()
        if now - watched < WATCH_INTERVAL:  # output keeps coming: look no more often than idle
            continue
        watched = now
        renew = now - renewed >= renew_every
        if renew:
            renewed = now
        if services.job_watch(job_id=job.pk, renew_lease=renew) and cancel_seen is None:
            cancel_seen = now
        _release_pooled_connection()
        if cancel_seen is not None and terminated is None and now - cancel_seen >= grace:
            logger.info("job %s did not stop in its %s s grace: stopping it", job.pk, grace)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, STOP_JOB)
            terminated, stopped_for = now, stopped_for or "cancel"
        if terminated is not None and now - terminated >= settings.JOBS_KILL_AFTER:
            child.kill()
        if now - started >= hard_limit and stopped_for != "time":
            logger.info("job %s ran past its %s s time limit: killing it", job.pk, hard_limit)
            child.kill()
            stopped_for = "time"
    child.join(EXIT_WAIT)
    if outcome is not None:
        return outcome
    if stopped_for == "cancel":
        return Outcome("cancelled")
    if stopped_for == "time":
        return _failed(kind, TimeLimitExceeded, f"It ran for more than {hard_limit:g} seconds.")
    return _failed(kind, WorkerLost, f"Its process ended with code {child.exitcode}.")


def _release_pooled_connection() -> None:
    """Give this thread's connection back to the pool (PostgreSQL) between two looks: a worker
    running more jobs than the pool holds (DATABASE_POOL_MAX_SIZE) would otherwise starve its
    output writer and the jobs' own processes' peers. SQLite's are kept (no pool)."""
    if getattr(connection, "pool", None) is not None:
        connection.close()


def _failed(kind: JobKind, error: type[BaseException], message: str) -> Outcome:
    return Outcome(
        "failed", error_type=error.__name__, message=message, retryable=kind.retry.retries(error)
    )


# ------------------------------------------------------------------ in the child


def _child(
    job_id: str, kind_name: str, databases: dict[str, dict[str, Any]], pipe: Connection
) -> None:
    # SIGTERM and SIGINT stay ignored, as the fork server has them: the worker decides.
    signal.signal(STOP_JOB, _raise_cancelled)
    sending = threading.Lock()  # the output thread and this one share the pipe

    def send(message: Any) -> None:
        with sending:
            pipe.send(message)

    for alias, settings_dict in databases.items():  # every thread's connections use these
        connections.settings[alias] = settings_dict
        connections[alias].settings_dict = settings_dict
    threading.Thread(
        target=_end_with_worker, args=(pipe,), name="worker-watch", daemon=True
    ).start()
    outcome = _run(job_id, kind_name, send)
    try:
        send(outcome)
    finally:
        connections.close_all()


def _end_with_worker(pipe: Connection) -> None:
    """End this process when the worker's end of the pipe closes (the worker died)."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            pipe.recv()  # the worker sends nothing: this returns at its end only
    os._exit(1)


def _run(job_id: Any, kind_name: str, send: Callable[[Any], None]) -> Outcome:
    from .registry import kind_get

    kind = kind_get(kind_name)
    assert kind is not None  # the worker found it before forking
    reporter = Reporter(job_id, output_sink=send)
    soft = kind.soft_time_limit or settings.JOBS_SOFT_TIME_LIMIT
    try:
        if soft:
            signal.signal(signal.SIGALRM, _raise_time_limit)
            signal.setitimer(signal.ITIMER_REAL, soft)
        try:
            job = Job.objects.get(pk=job_id)
            logcontext.bind(job_id=str(job_id), request_id=job.request_id or None)
            params = kind.params.model_validate(job.params)
            result = _result_json(kind, kind.run(job, params, reporter))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        reporter.flush()
        return Outcome("succeeded", result=result)
    except JobCancelled:
        _flush_quietly(reporter)
        return Outcome("cancelled")
    except Exception as exc:
        logger.exception("job %s (%s) failed", job_id, kind_name)
        _flush_quietly(reporter)
        return Outcome(
            "failed",
            error_type=type(exc).__name__,
            message=str(exc),
            retryable=kind.retry.retries(type(exc)),
        )


def _result_json(kind: JobKind, value: Any) -> dict[str, Any] | None:
    """The job's result as stored: its kind's `result` model, or a JSON object."""
    if kind.result is not None:
        return kind.result.model_validate(value).model_dump(mode="json")
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"a job's result is a dict or None, not {type(value).__name__}")
    if value is not None:
        json.dumps(value)  # raises TypeError for what the database could not store
    return value


def _flush_quietly(reporter: Reporter) -> None:
    try:
        reporter.flush()
    except Exception:
        logger.exception("job %s: its last progress could not be written", reporter.job_id)


def _raise_cancelled(signum: int, frame: Any) -> None:
    raise JobCancelled


def _raise_time_limit(signum: int, frame: Any) -> None:
    raise TimeLimitExceeded("It ran past its soft time limit.")
