"""Writes of the jobs domain: enqueue, claim, report, finish, cancel."""

from __future__ import annotations

import functools
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, QuerySet, Value, When
from django.utils import timezone
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from realtime.kernel import events, logcontext, metrics, sql
from realtime.kernel.broadcast import publish_on_commit
from realtime.kernel.names import JOB_SHARE_ENDED, job_channel, job_group, owner_group
from realtime.kernel.ratelimit import SlidingWindowLimit

from .errors import JobError, JobErrorCode
from .frames import job_output_event, job_update_event
from .models import (
    FINISHED,
    RUNNING,
    WAITING,
    Job,
    JobAttempt,
    JobLogLine,
    JobOutputChunk,
    JobShare,
    JobStatus,
)
from .registry import WorkerLost, kind_get
from .selectors import job_cancel_requested, job_column_key

logger = logging.getLogger(__name__)

LOG_LINE_MAX = 1000
# Chunks beyond JOBS_OUTPUT_KEEP are deleted once every this many chunks, not at each write.
OUTPUT_TRIM_EVERY = 100
# `error.type` of a job whose message the broker refused: it never ran.
BROKER_UNAVAILABLE = "BrokerUnavailable"
# Seconds a client is asked to wait when it has too many unfinished jobs.
ACTIVE_JOBS_RETRY_AFTER = 10
# JOBS_ENQUEUE_RATE: one budget per user, whichever way the jobs are enqueued.
ENQUEUE_LIMIT = SlidingWindowLimit("jobs_enqueue")
INSERTS = sql.Inserts(Job)


def job_enqueue(
    *,
    owner: User,
    kind: str,
    params: dict[str, Any],
    countdown: float | None = None,
    eta: datetime | None = None,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Write the job, then (after commit) send its Celery message; (job, created).

    Every rule of enqueueing is checked here, whichever interface asked: the kind and its
    params, the countdown or eta, the owner's rate (JOBS_ENQUEUE_RATE) and the cap on the
    owner's unfinished jobs. A repeated `idempotency_key` returns the job it created first
    (and spends no budget). If
    the broker refuses the message the job is marked failed and `broker_unavailable` is raised:
    it will not run, and a retry with the same key queues that same job again, within the
    active-jobs cap as a new job would be.
    """
    job_kind = kind_get(kind)
    if job_kind is None:
        raise JobError(JobErrorCode.UNKNOWN_KIND, f"No job kind {kind!r}.")
    try:
        clean = job_kind.params.model_validate(params).model_dump(mode="json")
    except ValidationError as exc:
        fields = {".".join(map(str, e["loc"])) or "params": [e["msg"]] for e in exc.errors()}
        raise JobError(JobErrorCode.INVALID_PARAMS, "The params are invalid.", fields) from exc
    now = timezone.now()
    run_at = _run_at(now, countdown, eta)
    if idempotency_key is not None:
        # A replay of a request already taken is answered with its job, and spends no budget.
        earlier = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return _job_resend_unqueued(earlier, owner=owner, now=now, run_at=run_at), False
    wait = ENQUEUE_LIMIT.take(who=f"user:{owner.pk}", rate=settings.JOBS_ENQUEUE_RATE)
    if wait is not None:
        raise JobError(
            JobErrorCode.RATE_LIMITED, f"Too many jobs; try again in {wait} s.", retry_after=wait
        )
    # Marked sent in its own INSERT, not by a write after the send: a job whose request ends
    # between commit and send is sent again by the dispatcher once it is late
    # (JOBS_REDISPATCH_AFTER), as one whose message the broker lost.
    send_now = (run_at - now).total_seconds() <= settings.JOBS_BROKER_MAX_DELAY
    try:
        with transaction.atomic():
            _owner_lock_below_active_cap(owner)
            job = INSERTS.insert(
                Job(
                    owner=owner,
                    kind=kind,
                    params=clean,
                    status=JobStatus.SCHEDULED if run_at > now else JobStatus.QUEUED,
                    created_at=now,
                    run_at=run_at,
                    idempotency_key=idempotency_key,
                    request_id=logcontext.request_id.get() or "",
                    seq=1,  # its creation is the job's first event
                    max_attempts=job_kind.retry.attempts,
                    dispatched_at=now if send_now else None,
                )
            )
            _publish_update(job)
    except IntegrityError:  # a concurrent retry with the same key won
        earlier = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if earlier is None:
            raise
        return earlier, False
    if send_now:
        _dispatch(job)
    # Later ones wait in the database: a broker holding a message for hours redelivers it
    # (Redis visibility timeout) or drops the consumer (RabbitMQ consumer timeout).
    return job, True


def _owner_lock_below_active_cap(owner: User) -> None:
    """Lock the owner's row, then refuse a job past JOBS_MAX_ACTIVE_PER_USER unfinished ones.

    The lock (a row lock on PostgreSQL; SQLite's IMMEDIATE transactions hold the write lock
    already) makes simultaneous enqueues of one user count one after another, so they never
    add up past the cap. Other users' enqueues do not wait.
    """
    if not settings.JOBS_MAX_ACTIVE_PER_USER:
        return
    _owner_lock(owner)
    _below_active_cap(owner)


def _owner_lock(owner: User) -> None:
    User.objects.select_for_update().only("pk").get(pk=owner.pk)


def _below_active_cap(owner: User) -> None:
    cap = settings.JOBS_MAX_ACTIVE_PER_USER
    if not cap:
        return
    active = Job.objects.filter(owner=owner, status__in=(*WAITING, *RUNNING)).count()
    if active >= cap:
        raise JobError(
            JobErrorCode.TOO_MANY_ACTIVE_JOBS,
            f"You have {active} unfinished jobs; at most {cap} may wait or run at once.",
            retry_after=ACTIVE_JOBS_RETRY_AFTER,
        )


def jobs_dispatch_due(*, now: datetime | None = None) -> int:
    """Send the messages of waiting jobs that are due within the broker's delay window.

    Beat runs it every 30 s. It sends the long countdowns that waited in the database, and
    again the jobs marked sent that have not started `JOBS_REDISPATCH_AFTER` seconds after
    they were due (the message was lost with a broker that restarted empty, sits with a dead
    worker until the visibility timeout, or was never sent: the request ended between commit
    and send). A job is claimed before it runs, so a second message is harmless. A broker that
    refuses the message leaves the job waiting for the next round.
    """
    now = now or timezone.now()
    horizon = now + timedelta(seconds=settings.JOBS_BROKER_MAX_DELAY)
    sent = 0
    waiting = Job.objects.filter(status__in=WAITING, cancel_requested=False)
    unsent = waiting.filter(dispatched_at=None, run_at__lte=horizon).order_by("run_at")[:1000]
    for job in list(unsent) + _jobs_maybe_lost(waiting, now):
        # Taking the row by moving `dispatched_at` first: two dispatchers never both send.
        if not Job.objects.filter(pk=job.pk, dispatched_at=job.dispatched_at).update(
            dispatched_at=now
        ):
            continue
        try:
            _send(job)
        except (OperationalError, OSError):
            logger.warning("broker refused job %s; the next round sends it", job.pk)
            Job.objects.filter(pk=job.pk, dispatched_at=now).update(dispatched_at=job.dispatched_at)
            break
        sent += 1
    return sent


def _jobs_maybe_lost(waiting: QuerySet[Job], now: datetime) -> list[Job]:
    """Waiting jobs sent a while ago that should have started by now.

    Sent again at growing intervals (each wait at least as long as the job was already late
    when last sent), so a long backlog on busy workers adds few duplicate messages.
    """
    grace = timedelta(seconds=settings.JOBS_REDISPATCH_AFTER)
    late = waiting.filter(run_at__lt=now - grace, dispatched_at__lt=now - grace)
    return [
        job
        for job in late.order_by("run_at")[:1000]
        if job.dispatched_at is not None
        and now - job.dispatched_at >= max(grace, job.dispatched_at - job.run_at)
    ]


def _job_resend_unqueued(job: Job, *, owner: User, now: datetime, run_at: datetime) -> Job:
    """A retried enqueue of a job that the broker refused: queue that same job again.

    The refused job is failed, so not counted: queueing it again takes a place under the
    active-jobs cap, under the owner's lock, as a new job does. Any other job is returned as
    it is.
    """
    if not _refused_by_broker(job):
        return job
    send_now = (run_at - now).total_seconds() <= settings.JOBS_BROKER_MAX_DELAY
    with transaction.atomic():
        _owner_lock(owner)
        # Read again under the lock: a simultaneous retry may have queued it meanwhile, and
        # then this is a replay of a queued job, not a new place taken.
        job = Job.objects.get(pk=job.pk)
        if not _refused_by_broker(job):
            return job
        _below_active_cap(owner)
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.SCHEDULED if run_at > now else JobStatus.QUEUED,
            run_at=run_at,
            error=None,
            finished_at=None,
            dispatched_at=now if send_now else None,
            seq=F("seq") + 1,
        )
        job = Job.objects.get(pk=job.pk)
        _publish_update(job)
    if send_now:
        _dispatch(job)
    return Job.objects.get(pk=job.pk)


def _refused_by_broker(job: Job) -> bool:
    """Whether the job failed because the broker refused its message (so it never ran)."""
    return (
        job.status == JobStatus.FAILED
        and job.started_at is None
        and (job.error or {}).get("type") == BROKER_UNAVAILABLE
    )


def _run_at(now: datetime, countdown: float | None, eta: datetime | None) -> datetime:
    limit = settings.JOBS_MAX_COUNTDOWN
    if countdown is not None and eta is not None:
        raise JobError(JobErrorCode.INVALID_SCHEDULE, "Give countdown or eta, not both.")
    if eta is not None:
        countdown = (eta - now).total_seconds()
        if countdown < -60:
            raise JobError(JobErrorCode.INVALID_SCHEDULE, "eta is in the past.")
    countdown = max(0.0, countdown or 0.0)
    if countdown > limit:
        raise JobError(
            JobErrorCode.INVALID_SCHEDULE, f"The countdown may be at most {limit} seconds."
        )
    return now + timedelta(seconds=countdown)


def _dispatch(job: Job) -> None:
    """Send the job's message now; if the broker refuses it, fail the job and raise.

    Called after the job's row is committed, never inside a transaction: a message is never
    sent for a row that a rollback could take back.
    """
    try:
        _send(job)
    except (OperationalError, OSError) as exc:
        logger.warning("broker refused job %s", job.id, exc_info=True)
        _finish(
            job.pk,
            JobStatus.FAILED,
            error={"type": BROKER_UNAVAILABLE, "message": "The job could not be queued."},
            only_if=WAITING,
        )
        raise JobError(
            JobErrorCode.BROKER_UNAVAILABLE, "The job queue is unavailable; try again shortly."
        ) from exc


def _send(job: Job) -> None:
    """Send the job's Celery message, to run at `run_at`.

    The caller has already set `dispatched_at`, in the write that made the job due. The
    task id is the job's id for its first attempt, and names the attempt after it (a retry
    is another message, which a broker may still hold the first of).
    """
    from .tasks import run_job

    task_id = str(job.id) if job.attempts == 0 else f"{job.id}.{job.attempts + 1}"
    run_job.apply_async((str(job.id),), task_id=task_id, eta=job.run_at, retry=True)


def job_claim(*, job_id: str) -> Job | None:
    """Take a waiting, not cancelled job for its next attempt; None if it is not (or no longer)
    waiting, or not due yet (a retry's message that came early)."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.JOBS_LEASE_SECONDS)
    with transaction.atomic():
        claimed = (
            Job.objects.filter(pk=job_id, status__in=WAITING, cancel_requested=False)
            .exclude(status=JobStatus.RETRYING, next_attempt_at__gt=now)
            .update(
                status=JobStatus.RUNNING,
                started_at=now,
                attempts=F("attempts") + 1,
                next_attempt_at=None,
                lease_expires_at=lease,
                queue_position=None,
                estimated_start_at=None,
                seq=F("seq") + 1,
            )
        )
        if not claimed:
            return None
        job = Job.objects.get(pk=job_id)
        JobAttempt.objects.create(job=job, number=job.attempts, started_at=now)
        _publish_update(job)
    if job.attempts == 1:  # a retry's start counts from its backoff, which is not late
        metrics.JOB_LATENESS.labels(job.kind).observe(max(0.0, (now - job.run_at).total_seconds()))
    return job


def job_watch(*, job_id: Any, renew_lease: bool) -> bool:
    """What the process running a job asks as it waits: whether it was asked to stop. With
    `renew_lease`, the job's lease is extended too (the worker is alive, whatever the job's
    code is doing)."""
    if renew_lease:
        lease = timezone.now() + timedelta(seconds=settings.JOBS_LEASE_SECONDS)
        Job.objects.filter(pk=job_id, status__in=RUNNING).update(lease_expires_at=lease)
    return job_cancel_requested(job_id=job_id)


def job_progress(*, job_id: Any, current: int, total: int, message: str) -> bool:
    """Record progress of a running job and extend its lease; False if it is not running."""
    lease = timezone.now() + timedelta(seconds=settings.JOBS_LEASE_SECONDS)
    with transaction.atomic():
        updated = Job.objects.filter(pk=job_id, status__in=RUNNING).update(
            progress_current=current,
            progress_total=total,
            progress_message=message[:500],
            lease_expires_at=lease,
            seq=F("seq") + 1,
        )
        if updated:
            _publish_update(Job.objects.get(pk=job_id))
    return bool(updated)


def job_log_append(*, job_id: Any, line: str) -> int:
    """Append a numbered log line (bounded length); its number."""
    line = line[:LOG_LINE_MAX]
    with transaction.atomic():
        Job.objects.filter(pk=job_id).update(log_lines=F("log_lines") + 1)
        number = Job.objects.values_list("log_lines", flat=True).get(pk=job_id)
        JobLogLine.objects.create(job_id=job_id, number=number, line=line)
        channel = job_channel(str(job_id))
        frame = events.dump(
            events.JobLogFrame(channel=channel, job_id=str(job_id), number=number, line=line)
        )
        publish_on_commit(
            job_group(job_id), {"type": "job.log", "job": str(job_id), "frame": frame}
        )
    return int(number)


def job_output_append(*, job_id: Any, chunks: list[str]) -> int:
    """Append chunks to the job's output stream, in order, and send them in one frame after
    commit; the last chunk's `seq` (0 if there was nothing to write).

    A chunk longer than JOBS_OUTPUT_CHUNK_MAX is cut into pieces of that length: nothing is
    lost, and no frame or row grows without bound. Only the newest JOBS_OUTPUT_KEEP chunks stay
    stored; a replay asks for what is still kept.
    """
    written = jobs_output_append(batches={job_id: chunks})
    if chunks and job_id not in written:
        raise Job.DoesNotExist(f"No job {job_id}.")
    return written.get(job_id, 0)


def jobs_output_append(*, batches: dict[Any, list[str]]) -> dict[Any, int]:
    """`job_output_append` for several jobs in one transaction: each job's last `seq`, for the
    jobs that still exist (a deleted job's chunks are dropped).

    A worker writes what all its running jobs wrote meanwhile at once (`jobs.outputs`), so the
    round costs the same three statements for one job or twenty: one `UPDATE` counts every
    job's chunks and reads the new counts back, one `INSERT` writes every chunk, and now and
    then one `DELETE` trims. Written per job with the ORM, each job cost an `UPDATE` and a
    `bulk_create` (about 530 µs a job a round here, a core's worth at 20 jobs streaming).
    """
    size = settings.JOBS_OUTPUT_CHUNK_MAX
    pieces = {
        job_column_key(job_id): (
            job_id,
            [str(c)[start : start + size] for c in chunks for start in range(0, len(c), size)],
        )
        for job_id, chunks in batches.items()
    }
    pieces = {key: found for key, found in pieces.items() if found[1]}
    if not pieces:
        return {}
    written: dict[Any, int] = {}
    keep = settings.JOBS_OUTPUT_KEEP
    with transaction.atomic():
        rows: list[Any] = []
        trim: list[Any] = []
        for key, count in _output_count(pieces):
            job_id, texts = pieces[key]
            last = int(count)
            first = last - len(texts) + 1
            written[job_id] = last
            for seq, data in enumerate(texts, start=first):
                rows += [key, seq, data]
            if last > keep and (first - 1) // OUTPUT_TRIM_EVERY != last // OUTPUT_TRIM_EVERY:
                trim += [key, last - keep]
            for start in range(0, len(texts), OUTPUT_FRAME_MAX):
                frame_chunks = texts[start : start + OUTPUT_FRAME_MAX]
                event = job_output_event(str(job_id), first + start, frame_chunks)
                publish_on_commit(job_group(job_id), event)
        for start in range(0, len(rows), 3 * OUTPUT_ROWS_PER_INSERT):
            part = rows[start : start + 3 * OUTPUT_ROWS_PER_INSERT]
            sql.execute(_output_insert_sql(connection.vendor, len(part) // 3), part)
        for start in range(0, len(trim), 2):
            sql.execute(_output_trim_sql(connection.vendor), trim[start : start + 2])
    return written


def _output_count(pieces: dict[Any, tuple[Any, list[str]]]) -> list[tuple[Any, int]]:
    """Add each job's new chunks to its output count in one statement, in the order of the
    jobs' ids (two writers lock rows in one order); (key, new count) of each job found."""
    keys = sorted(pieces, key=str)
    found: list[tuple[Any, int]] = []
    for start in range(0, len(keys), OUTPUT_JOBS_PER_UPDATE):
        part = keys[start : start + OUTPUT_JOBS_PER_UPDATE]
        params: list[Any] = []
        for key in part:
            params += [key, len(pieces[key][1])]
        counted = sql.rows(_output_count_sql(connection.vendor, len(part)), [*params, *part])
        found += [(key, int(count)) for key, count in counted]
    return found


# Chunks in one `job.output` frame at most: a job that wrote thousands in one interval is
# sent as several frames, none of them megabytes.
OUTPUT_FRAME_MAX = 1000
# Bounds of one statement's parameters (SQLite allows 32,766 since 3.32).
OUTPUT_JOBS_PER_UPDATE = 100
OUTPUT_ROWS_PER_INSERT = 500


@functools.cache
def _output_count_sql(vendor: str, jobs: int) -> str:
    """Add to several jobs' output counts and read the new counts (SQLite 3.35+, PostgreSQL)."""
    del vendor  # keys the cache: the quoting is the connection's
    quote = connection.ops.quote_name
    table, key, count = quote(Job._meta.db_table), quote("id"), quote("output_chunks")
    added = " ".join(["WHEN %s THEN %s"] * jobs)
    keys = ", ".join(["%s"] * jobs)
    return (
        f"UPDATE {table} SET {count} = {count} + CASE {key} {added} END "  # noqa: S608
        f"WHERE {key} IN ({keys}) RETURNING {key}, {count}"
    )


@functools.cache
def _output_insert_sql(vendor: str, rows: int) -> str:
    del vendor
    quote = connection.ops.quote_name
    table = quote(JobOutputChunk._meta.db_table)
    values = ", ".join(["(%s, %s, %s)"] * rows)
    return (
        f"INSERT INTO {table} ({quote('job_id')}, {quote('seq')}, {quote('data')}) VALUES {values}"  # noqa: S608
    )


@functools.cache
def _output_trim_sql(vendor: str) -> str:
    del vendor
    quote = connection.ops.quote_name
    table = quote(JobOutputChunk._meta.db_table)
    return f"DELETE FROM {table} WHERE {quote('job_id')} = %s AND {quote('seq')} <= %s"  # noqa: S608


def job_succeed(*, job_id: Any, result: dict[str, Any] | None) -> None:
    _finish(job_id, JobStatus.SUCCEEDED, result=result, only_if=RUNNING)


def job_fail(*, job_id: Any, error_type: str, message: str, retryable: bool = False) -> str:
    """End the running attempt with an error; the job is tried again (`retrying`) if
    `retryable` and it has attempts left and no one cancelled it, else it fails. Its status."""
    error = {"type": error_type, "message": message[:500]}
    if retryable:
        retried = _retry_later(job_id, error)
        if retried is not None:
            return retried
    _finish(job_id, JobStatus.FAILED, error=error, only_if=RUNNING)
    return JobStatus.FAILED


def _retry_later(
    job_id: Any, error: dict[str, str], *, lease_before: datetime | None = None
) -> str | None:
    """Schedule the next attempt after the kind's backoff; None if there is none to have."""
    now = timezone.now()
    with transaction.atomic():
        running = Job.objects.select_for_update().filter(pk=job_id, status__in=RUNNING)
        if lease_before is not None:
            running = running.filter(lease_expires_at__lt=lease_before)
        job = running.first()
        job_kind = None if job is None else kind_get(job.kind)
        if (
            job is None
            or job_kind is None
            or job.cancel_requested
            or job.attempts >= job.max_attempts
        ):
            return None
        run_at = now + timedelta(seconds=job_kind.retry.delay(job.attempts))
        send_now = (run_at - now).total_seconds() <= settings.JOBS_BROKER_MAX_DELAY
        Job.objects.filter(pk=job_id).update(
            status=JobStatus.RETRYING,
            error=error,
            run_at=run_at,
            next_attempt_at=run_at,
            lease_expires_at=None,
            dispatched_at=now if send_now else None,
            seq=F("seq") + 1,
        )
        _attempt_end(job_id, JobStatus.FAILED, error, now)
        job = Job.objects.get(pk=job_id)
        _publish_update(job)
    if send_now:
        try:
            _send(job)
        except (OperationalError, OSError):  # the dispatcher sends it once the broker is back
            logger.warning("broker refused the retry of job %s", job.pk, exc_info=True)
            Job.objects.filter(pk=job.pk, dispatched_at=now).update(dispatched_at=None)
    return JobStatus.RETRYING


def job_mark_cancelled(*, job_id: Any) -> None:
    _finish(job_id, JobStatus.CANCELLED, only_if=(*RUNNING, *WAITING))


def job_cancel(*, job: Job) -> Job:
    """Cancel: a waiting job never starts; a running one is `cancelling` until it stops, at its
    reporter's next check, or when its grace is over and its process is stopped."""
    if job.status in FINISHED:
        raise JobError(JobErrorCode.NOT_CANCELLABLE, f"The job has already {job.status}.")
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(
            cancel_requested=True,
            status=Case(
                When(status__in=RUNNING, then=Value(JobStatus.CANCELLING)), default=F("status")
            ),
            seq=F("seq") + 1,
        )
        refreshed = Job.objects.get(pk=job.pk)
        _publish_update(refreshed)
    if refreshed.status in WAITING:
        job_mark_cancelled(job_id=job.pk)
    return Job.objects.get(pk=job.pk)


def job_retry(*, job: Job, owner: User) -> Job:
    """Run a failed job again, under its id, with its kind's attempts once more.

    Its owner's rules for a new job apply: the enqueue rate and the cap on unfinished jobs.
    Its earlier attempts stay in its history.
    """
    if job.owner_id != owner.pk:
        raise JobError(JobErrorCode.NOT_JOB_OWNER, "Only the job's owner may retry it.")
    if job.status != JobStatus.FAILED:
        raise JobError(
            JobErrorCode.NOT_RETRYABLE,
            f"Only a failed job can be retried; this one is {job.status}.",
        )
    job_kind = kind_get(job.kind)
    if job_kind is None:
        raise JobError(JobErrorCode.UNKNOWN_KIND, f"No job kind {job.kind!r} any more.")
    wait = ENQUEUE_LIMIT.take(who=f"user:{owner.pk}", rate=settings.JOBS_ENQUEUE_RATE)
    if wait is not None:
        raise JobError(
            JobErrorCode.RATE_LIMITED, f"Too many jobs; try again in {wait} s.", retry_after=wait
        )
    now = timezone.now()
    with transaction.atomic():
        _owner_lock_below_active_cap(owner)
        retried = Job.objects.filter(pk=job.pk, status=JobStatus.FAILED).update(
            status=JobStatus.QUEUED,
            run_at=now,
            max_attempts=F("attempts") + job_kind.retry.attempts,
            next_attempt_at=None,
            result=None,
            error=None,
            finished_at=None,
            cancel_requested=False,
            progress_current=0,
            progress_total=0,
            progress_message="",
            dispatched_at=now,
            seq=F("seq") + 1,
        )
        if not retried:  # retried meanwhile by another request
            raise JobError(JobErrorCode.NOT_RETRYABLE, "The job is already being retried.")
        job = Job.objects.get(pk=job.pk)
        _publish_update(job)
    _dispatch(job)
    return job


def jobs_reap_expired(*, now: datetime | None = None) -> int:
    """Fail running jobs whose worker stopped renewing the lease (killed mid-job)."""
    now = now or timezone.now()
    reaped = 0
    expired = Job.objects.filter(status__in=RUNNING, lease_expires_at__lt=now)
    for job_id, kind in expired.values_list("pk", "kind"):
        job_kind = kind_get(kind)
        error = {"type": WorkerLost.__name__, "message": "The worker running this job stopped."}
        if (
            job_kind is not None
            and job_kind.retry.retries(WorkerLost)
            and _retry_later(job_id, error, lease_before=now) is not None
        ):
            reaped += 1
            continue
        reaped += _finish(job_id, JobStatus.FAILED, error=error, only_if=RUNNING, lease_before=now)
    return reaped


def _finish(
    job_id: Any,
    status: str,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
    only_if: tuple[str, ...],
    lease_before: datetime | None = None,
) -> int:
    with transaction.atomic():
        jobs = Job.objects.filter(pk=job_id, status__in=only_if)
        if lease_before is not None:
            jobs = jobs.filter(lease_expires_at__lt=lease_before)
        changed = jobs.update(
            status=status,
            result=result,
            error=error,
            finished_at=timezone.now(),
            lease_expires_at=None,
            seq=F("seq") + 1,
        )
        if changed:
            _attempt_end(job_id, status, error, timezone.now())
            job = Job.objects.get(pk=job_id)
            _publish_update(job)
    if changed:
        metrics.JOBS_FINISHED.labels(job.kind, status).inc()
    if changed and job.started_at is not None and job.finished_at is not None:
        took = (job.finished_at - job.started_at).total_seconds()
        metrics.JOB_DURATION.labels(job.kind, status).observe(max(0.0, took))
    return changed


def _attempt_end(job_id: Any, status: str, error: dict[str, str] | None, now: datetime) -> None:
    """Close the job's running attempt, if it has one (a waiting job cancelled has none)."""
    JobAttempt.objects.filter(job_id=job_id, finished_at=None).update(
        status=status, error=error, finished_at=now
    )


def _publish_update(job: Job) -> None:
    # A request's update goes out from its event loop after the response: the worker's next
    # update (another process) may overtake it, and then the feeds drop this older one
    # (realtime.sockets.job_feed): each update carries the job's whole state.
    event = job_update_event(job)
    publish_on_commit(job_group(job.id), event)
    publish_on_commit(owner_group(job.owner_id), event)


# Share links: at most this many unexpired, unrevoked ones per job, each for at most this long.
SHARES_PER_JOB = 20
SHARE_MAX_SECONDS = 30 * 24 * 60 * 60
SHARE_MIN_SECONDS = 60


def job_share_create(*, job: Job, owner: User, expires_in: int) -> tuple[JobShare, str]:
    """A read-only link to the job, for its owner to hand out; (share, token).

    The token is returned once and only its hash is stored. Its holder may read this job (its
    state, log, output and attempts) and follow its channel, nothing else: no other job, not
    the owner's account, no writes.
    """
    if job.owner_id != owner.pk:
        raise JobError(JobErrorCode.NOT_JOB_OWNER, "Only the job's owner may share it.")
    if not SHARE_MIN_SECONDS <= expires_in <= SHARE_MAX_SECONDS:
        raise JobError(
            JobErrorCode.INVALID_SHARE,
            f"expires_in is {SHARE_MIN_SECONDS}..{SHARE_MAX_SECONDS} seconds.",
            {"expires_in": [f"Between {SHARE_MIN_SECONDS} and {SHARE_MAX_SECONDS}."]},
        )
    now = timezone.now()
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        _owner_lock(owner)  # simultaneous creations count one after another
        live = JobShare.objects.filter(job=job, revoked_at=None, expires_at__gt=now).count()
        if live >= SHARES_PER_JOB:
            raise JobError(
                JobErrorCode.TOO_MANY_SHARES,
                f"The job has {live} share links; revoke one first (at most {SHARES_PER_JOB}).",
            )
        share = JobShare.objects.create(
            job=job,
            token_hash=JobShare.hash(token),
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in),
        )
    return share, token


def job_share_revoke(*, job: Job, owner: User, share_id: int) -> JobShare:
    """End a share link now; sockets following the job with it are unsubscribed."""
    if job.owner_id != owner.pk:
        raise JobError(JobErrorCode.NOT_JOB_OWNER, "Only the job's owner may revoke its links.")
    with transaction.atomic():
        share = JobShare.objects.select_for_update().filter(job=job, pk=share_id).first()
        if share is None:
            raise JobError(JobErrorCode.NOT_FOUND, "No such share link.")
        if share.revoked_at is None:
            share.revoked_at = timezone.now()
            share.save(update_fields=["revoked_at"])
            publish_on_commit(job_group(job.pk), {"type": JOB_SHARE_ENDED, "share": share.pk})
    return share


# Queue positions are kept for the first this many due jobs; the ones after them show none.
QUEUE_POSITIONS_MAX = 200
# A job's estimate is pushed again only when it moves by more than this.
ESTIMATE_SLACK = timedelta(seconds=2)
# How many recent attempts the estimate's job duration is the median of.
RECENT_ATTEMPTS = 50


def jobs_queue_positions(*, now: datetime | None = None) -> int:
    """Give each due, waiting job its place among them and an estimated start; how many changed.

    Beat runs it every second, so a job's position is pushed (a `job.update`) at most once a
    second, and only when it changed (or its estimate moved by more than ESTIMATE_SLACK). Due
    jobs start in the order they became due (`run_at`, then creation). The estimate is the
    median duration of recent attempts for each round of the jobs running now (as many as are
    running, at least one) ahead of it: a guess, said as "about".
    """
    now = now or timezone.now()
    due = list(
        Job.objects.filter(status__in=WAITING, run_at__lte=now, cancel_requested=False)
        .order_by("run_at", "created_at")
        .values_list("pk", "queue_position", "estimated_start_at")[:QUEUE_POSITIONS_MAX]
    )
    changed = 0
    with transaction.atomic():
        placed = {pk for pk, _, _ in due}
        # Started, cancelled or past the cap since: no position any more.
        gone = Job.objects.filter(queue_position__isnull=False).exclude(pk__in=placed)
        gone.update(queue_position=None, estimated_start_at=None)
        if not due:
            return 0
        duration = _recent_attempt_seconds()
        slots = max(1, Job.objects.filter(status__in=RUNNING).count())
        for index, (pk, position, estimate) in enumerate(due):
            new_position = index + 1
            new_estimate = now + timedelta(seconds=duration * (index // slots + 1))
            moved = estimate is None or abs(new_estimate - estimate) > ESTIMATE_SLACK
            if new_position == position and not moved:
                continue
            updated = Job.objects.filter(pk=pk, status__in=WAITING).update(
                queue_position=new_position,
                estimated_start_at=new_estimate,
                seq=F("seq") + 1,
            )
            if updated:
                changed += 1
                _publish_update(Job.objects.get(pk=pk))
    return changed


def _recent_attempt_seconds() -> float:
    """The median duration of the most recent finished attempts (1 s when there are none)."""
    spans = JobAttempt.objects.filter(finished_at__isnull=False).order_by("-finished_at")
    durations = sorted(
        (finished - started).total_seconds()
        for started, finished in spans.values_list("started_at", "finished_at")[:RECENT_ATTEMPTS]
        if finished is not None
    )
    return durations[len(durations) // 2] if durations else 1.0
