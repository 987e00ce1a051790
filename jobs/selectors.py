"""Reads of the jobs domain."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from realtime.kernel import events, sql
from realtime.kernel.listing import Listing

from .frames import job_state_model
from .models import RUNNING, WAITING, Job, JobAttempt, JobLogLine, JobOutputChunk, JobShare

LOG_PAGE_MAX = 500
SHARE_TOKEN_MAX = 100
OUTPUT_PAGE_MAX = 1000

# A job row read whole, as `job_get` and `job_list` select it.
JOBS = sql.Rows(Job)


def job_get(*, job_id: Any, viewer: User) -> Job | None:
    """The job if `viewer` may see it (its owner, or staff); None otherwise, as if unknown."""
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:  # not a UUID: unknown, like any other id
        return None
    # The SQL written once: the ORM built it again for each read, most of this read's CPU.
    if viewer.is_staff:
        found = sql.row(_job_sql(mine=False), [job_column_key(key)])
    else:
        found = sql.row(_job_sql(mine=True), [job_column_key(key), viewer.pk])
    return None if found is None else JOBS.load(found)


def job_column_key(job_id: Any) -> Any:
    """A job's id as the database stores it (a UUID on PostgreSQL, 32 hex digits on SQLite),
    for statements written once; ValueError for what is not a UUID."""
    key = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    return Job._meta.get_field("id").get_db_prep_value(key, connection)


def job_cancel_requested(*, job_id: Any) -> bool:
    """Whether someone asked the job to stop: what a running job's process and its worker
    ask several times a second (a statement written once: about 30 µs, against 400 through
    the ORM)."""
    found = sql.row(_cancel_requested_sql(), [job_column_key(job_id)])
    return bool(found and found[0])


@functools.cache
def _cancel_requested_sql() -> str:
    quote = connection.ops.quote_name
    table, key, asked = (
        quote(name) for name in (Job._meta.db_table, *_columns("id", "cancel_requested"))
    )
    return f"SELECT {asked} FROM {table} WHERE {key} = %s"  # noqa: S608 - model's names


@functools.cache
def _job_sql(*, mine: bool) -> str:
    """The job with the id given (and, if `mine`, the owner given): at most one row."""
    quote = connection.ops.quote_name
    table, key, owner = (quote(name) for name in (Job._meta.db_table, *_columns("id", "owner")))
    one = f"SELECT {JOBS.columns()} FROM {table} WHERE {key} = %s"  # noqa: S608 - model's names
    return f"{one} AND {owner} = %s" if mine else one


def _columns(*fields: str) -> list[str]:
    columns = [getattr(Job._meta.get_field(name), "column", None) for name in fields]
    assert all(isinstance(column, str) for column in columns)  # concrete fields have columns
    return [str(column) for column in columns]


def job_state_get(*, job_id: Any) -> events.JobState:
    """The job's current full state (one query); `Job.DoesNotExist` for an unknown id."""
    return job_state_model(Job.objects.get(pk=job_id))


def job_states(*, job_ids: list[str]) -> list[events.JobState]:
    """The current full state of each of these jobs that exists (one query at most)."""
    return [job_state_model(job) for job in Job.objects.filter(pk__in=job_ids)]


def job_list(*, owner: User, status: str | None = None) -> Listing[Job]:
    """The owner's jobs (of one status, if given), newest first.

    A page is one query and the count another, both written once: the ORM built them again
    for every list.
    """
    mine: list[Any] = [owner.pk] if status is None else [owner.pk, status]
    page_sql, count_sql = _job_list_sql(by_status=status is not None)

    def page(offset: int, limit: int) -> list[Job]:
        return JOBS.load_all(sql.rows(page_sql, [*mine, limit, offset]))

    def count() -> int:
        counted = sql.row(count_sql, mine)
        assert counted is not None  # COUNT(*) has its row
        return int(counted[0])

    return Listing(page, count)


@functools.cache
def _job_list_sql(*, by_status: bool) -> tuple[str, str]:
    """A page of an owner's jobs (of a status), newest first; and how many there are."""
    quote = connection.ops.quote_name
    table, owner, status, created = (
        quote(name) for name in (Job._meta.db_table, *_columns("owner", "status", "created_at"))
    )
    where = f"WHERE {owner} = %s" + (f" AND {status} = %s" if by_status else "")
    return (
        f"SELECT {JOBS.columns()} FROM {table} {where} ORDER BY {created} DESC LIMIT %s OFFSET %s",  # noqa: S608
        f"SELECT COUNT(*) FROM {table} {where}",  # noqa: S608
    )


def jobs_changed_since(*, owner_id: int, since: datetime, limit: int) -> list[Job]:
    """The owner's jobs that may have changed at or after `since`; at most `limit`, newest first.

    A job has no `updated_at`; each change that counts in its `seq` leaves a timestamp instead,
    except a cancel request, which stamps nothing until the job stops. The test is loose on
    purpose (a waiting job whose countdown ends after `since` matches though it may not have
    changed): callers de-duplicate by `seq`, and must never miss a change.
    """
    lease = timedelta(seconds=settings.JOBS_LEASE_SECONDS)
    changed = (
        Q(created_at__gte=since)  # enqueued
        | Q(started_at__gte=since)  # claimed by a worker
        | Q(lease_expires_at__gte=since + lease)  # progress: the lease runs from then
        | Q(finished_at__gte=since)  # succeeded, failed, cancelled, reaped, refused by the broker
        | Q(status__in=WAITING, run_at__gte=since)  # queued again after a broker refusal
        | Q(cancel_requested=True, finished_at=None)  # cancel requested, not yet stopped
    )
    jobs = Job.objects.filter(owner_id=owner_id).filter(changed).order_by("-created_at")
    return list(jobs[:limit])


def job_states_changed_since(
    *, owner_id: int, since: datetime, limit: int
) -> list[events.JobState]:
    """The state of each of the owner's `jobs_changed_since`, newest first (one query)."""
    jobs = jobs_changed_since(owner_id=owner_id, since=since, limit=limit)
    return [job_state_model(job) for job in jobs]


def job_log(*, job: Job, after: int = 0, limit: int = 100) -> list[JobLogLine]:
    limit = max(1, min(limit, LOG_PAGE_MAX))
    return list(JobLogLine.objects.filter(job=job, number__gt=after).order_by("number")[:limit])


def job_attempts(*, job: Job) -> list[JobAttempt]:
    """The job's attempts, first to last (one query; bounded by its kind's attempts)."""
    return list(JobAttempt.objects.filter(job=job).order_by("number"))


def job_output(
    *, job_id: Any, after: int = 0, limit: int = OUTPUT_PAGE_MAX
) -> list[events.JobOutputChunk]:
    """The job's output chunks after `after`, in order; at most `limit` (one query).

    Chunks older than the newest JOBS_OUTPUT_KEEP are no longer stored: a page may start past
    `after + 1`, and `job_output_first` says where what is kept begins.
    """
    limit = max(1, min(limit, OUTPUT_PAGE_MAX))
    rows = JobOutputChunk.objects.filter(job_id=job_id, seq__gt=after).order_by("seq")
    return [
        events.JobOutputChunk(seq=seq, data=data)
        for seq, data in rows.values_list("seq", "data")[:limit]
    ]


def job_output_first(*, job: Job) -> int:
    """The `seq` of the oldest output chunk still kept (1 while none was dropped)."""
    return max(1, job.output_chunks - settings.JOBS_OUTPUT_KEEP + 1) if job.output_chunks else 1


def job_share_get(*, job_id: Any, token: str) -> JobShare | None:
    """The live share link of this job with this token (one query); None for any other job,
    an unknown, expired or revoked token, as if there were none."""
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:
        return None
    if not token or len(token) > SHARE_TOKEN_MAX:
        return None
    return (
        JobShare.objects.select_related("job")
        .filter(
            token_hash=JobShare.hash(token),
            job_id=key,
            revoked_at=None,
            expires_at__gt=timezone.now(),
        )
        .first()
    )


@dataclass(frozen=True)
class JobRead:
    """A job someone may read, and the share link they read it through (None: as its owner,
    or staff)."""

    job: Job
    share: JobShare | None = None


def job_readable(*, job_id: Any, viewer: User | None, share_token: str | None) -> JobRead | None:
    """Whether and how this reader may read the job: REST and the socket both ask this.

    A share token that is live for this very job reads it through that link (one query).
    Otherwise a signed-in viewer reads it as its owner or as staff (one query more). None
    otherwise (a stranger, a link to another job, an expired or revoked link, no such job),
    which every transport answers as if the job did not exist.
    """
    if share_token:
        share = job_share_get(job_id=job_id, token=share_token)
        if share is not None:
            return JobRead(share.job, share)
    if viewer is None or not viewer.is_authenticated:
        return None
    job = job_get(job_id=job_id, viewer=viewer)
    return None if job is None else JobRead(job)


def job_shares(*, job: Job) -> list[JobShare]:
    """The job's share links, newest first, revoked and expired ones too (one query)."""
    return list(JobShare.objects.filter(job=job).order_by("-created_at", "-pk"))


def jobs_unfinished_counts() -> dict[tuple[str, str], int]:
    """Waiting and running jobs, counted by (kind, status): what `/metrics` shows (one query,
    on the status index; finished jobs are counted as they finish instead)."""
    found = (
        Job.objects.filter(status__in=(*WAITING, *RUNNING))
        .values_list("kind", "status")
        .annotate(count=Count("pk"))
        .order_by()
    )
    return {(kind, status): count for kind, status, count in found}
