"""Writes of the jobs domain, in process: enqueue, claim, report, finish, cancel, reap, dispatch."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs.errors import JobError, JobErrorCode
from jobs.models import Job, JobLogLine, JobStatus
from jobs.selectors import job_cancel_requested
from jobs.services import (
    LOG_LINE_MAX,
    job_cancel,
    job_claim,
    job_enqueue,
    job_fail,
    job_log_append,
    job_mark_cancelled,
    job_progress,
    job_succeed,
    jobs_dispatch_due,
    jobs_reap_expired,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SLEEP: dict[str, Any] = {"kind": "demo.sleep", "params": {"steps": 2, "max_seconds": 0}}


@pytest.fixture
def owner():
    return UserFactory.create()


def enqueue(owner, **kwargs: Any) -> Job:
    job, created = job_enqueue(owner=owner, **{**SLEEP, **kwargs})
    assert created
    return job


def refused(call, **kwargs: Any) -> JobError:
    with pytest.raises(JobError) as raised:
        call(**kwargs)
    return raised.value


def stored(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def running(owner) -> Job:
    claimed = job_claim(job_id=str(enqueue(owner).pk))
    assert claimed is not None
    return claimed


# ---------------------------------------------------------------- enqueue


def test_enqueue_writes_the_job_with_clean_params_as_its_first_event(owner):
    job = enqueue(owner, params={"steps": 3})

    job = stored(job)
    assert (job.owner, job.kind, job.status) == (owner, "demo.sleep", JobStatus.QUEUED)
    assert job.params == {"steps": 3, "max_seconds": 5.0}  # defaults filled in
    assert job.seq == 1
    assert job.run_at == job.created_at
    assert job.dispatched_at is not None  # its message went to the broker


def test_a_countdown_schedules_the_job_that_far_ahead(owner):
    job = stored(enqueue(owner, countdown=30))

    assert job.status == JobStatus.SCHEDULED
    assert job.run_at - job.created_at == timedelta(seconds=30)
    assert job.dispatched_at is not None  # within the broker's delay window: sent now


def test_a_countdown_past_the_broker_window_waits_in_the_database(owner, settings):
    job = stored(enqueue(owner, countdown=settings.JOBS_BROKER_MAX_DELAY + 1))

    assert job.status == JobStatus.SCHEDULED
    assert job.dispatched_at is None


def test_the_longest_countdown_is_taken_and_a_longer_one_refused(owner, settings):
    limit = settings.JOBS_MAX_COUNTDOWN

    job = stored(enqueue(owner, countdown=limit))
    error = refused(job_enqueue, owner=owner, **SLEEP, countdown=limit + 0.001)

    assert job.run_at - job.created_at == timedelta(seconds=limit)
    assert error.code == JobErrorCode.INVALID_SCHEDULE
    assert str(limit) in error.detail
    assert Job.objects.count() == 1


def test_an_eta_is_the_run_time(owner):
    eta = timezone.now() + timedelta(hours=1)

    job = stored(enqueue(owner, eta=eta))

    assert (job.status, job.run_at) == (JobStatus.SCHEDULED, eta)


def test_an_eta_a_little_in_the_past_runs_now_and_one_long_past_is_refused(owner):
    # A client's clock may be a little behind: up to a minute is taken as "now".
    now = timezone.now()

    job = stored(enqueue(owner, eta=now - timedelta(seconds=30)))
    error = refused(job_enqueue, owner=owner, **SLEEP, eta=now - timedelta(minutes=5))

    assert (job.status, job.run_at) == (JobStatus.QUEUED, job.created_at)
    assert error.code == JobErrorCode.INVALID_SCHEDULE
    assert Job.objects.count() == 1


@pytest.mark.parametrize(
    ("schedule", "code"),
    [
        ({"countdown": 5, "eta": datetime(2030, 1, 1, tzinfo=UTC)}, "invalid_schedule"),
        ({"eta": datetime(2001, 1, 1, tzinfo=UTC)}, "invalid_schedule"),
        ({"countdown": 10**9}, "invalid_schedule"),
    ],
)
def test_impossible_schedules_are_refused(owner, schedule, code):
    assert refused(job_enqueue, owner=owner, **SLEEP, **schedule).code == code
    assert not Job.objects.exists()


def test_a_negative_countdown_means_now(owner):
    job = stored(enqueue(owner, countdown=-5))

    assert (job.status, job.run_at) == (JobStatus.QUEUED, job.created_at)


@pytest.mark.parametrize(
    ("kind", "params", "code", "field"),
    [
        ("os.system", {}, JobErrorCode.UNKNOWN_KIND, None),
        ("demo.sleep", {"steps": 0}, JobErrorCode.INVALID_PARAMS, "steps"),
        ("demo.sleep", {"steps": "many"}, JobErrorCode.INVALID_PARAMS, "steps"),
        ("demo.sleep", {"max_seconds": 11}, JobErrorCode.INVALID_PARAMS, "max_seconds"),
        ("demo.sleep", {"surprise": 1}, JobErrorCode.INVALID_PARAMS, "surprise"),
        ("room.export", {"room": "no spaces"}, JobErrorCode.INVALID_PARAMS, "room"),
    ],
)
def test_unknown_kinds_and_bad_params_are_refused_and_leave_no_job(
    owner, kind, params, code, field
):
    error = refused(job_enqueue, owner=owner, kind=kind, params=params)

    assert error.code == code
    if field is not None:
        assert field in error.fields
    assert not Job.objects.exists()


def test_a_repeated_idempotency_key_returns_the_first_job(owner):
    # given
    first, created = job_enqueue(owner=owner, **SLEEP, idempotency_key="k-1")

    # when: the same request again, and with other params
    again, created_again = job_enqueue(owner=owner, **SLEEP, idempotency_key="k-1")
    other, _ = job_enqueue(owner=owner, kind="demo.sleep", params={}, idempotency_key="k-1")

    # then
    assert (created, created_again) == (True, False)
    assert again.pk == other.pk == first.pk
    assert Job.objects.count() == 1
    assert stored(first).seq == 1  # nothing happened to it


def test_idempotency_keys_are_per_owner_and_per_key(owner):
    someone_else = UserFactory.create()

    mine = enqueue(owner, idempotency_key="k-1")
    theirs = enqueue(someone_else, idempotency_key="k-1")
    another = enqueue(owner, idempotency_key="k-2")

    assert len({mine.pk, theirs.pk, another.pk}) == 3


def test_the_active_jobs_cap_refuses_one_more_until_one_finishes(owner, settings):
    # given: a cap of two unfinished jobs per user, reached
    settings.JOBS_MAX_ACTIVE_PER_USER = 2
    first = enqueue(owner)
    enqueue(owner, countdown=60)

    # when
    error = refused(job_enqueue, owner=owner, **SLEEP)

    # then: refused; another user is not affected; a replayed key is not a new job; and a
    # finished job frees its place
    assert error.code == JobErrorCode.TOO_MANY_ACTIVE_JOBS
    assert "at most 2" in error.detail
    assert Job.objects.filter(owner=owner).count() == 2
    enqueue(UserFactory.create())
    job_cancel(job=first)
    replay = enqueue(owner, idempotency_key="after")
    assert job_enqueue(owner=owner, **SLEEP, idempotency_key="after") == (replay, False)


def test_a_running_job_counts_against_the_cap(owner, settings):
    settings.JOBS_MAX_ACTIVE_PER_USER = 1
    running(owner)

    assert refused(job_enqueue, owner=owner, **SLEEP).code == JobErrorCode.TOO_MANY_ACTIVE_JOBS


# ---------------------------------------------------------------- claim, progress, log, finish


def test_a_waiting_job_is_claimed_once(owner, settings):
    job = enqueue(owner)

    first = job_claim(job_id=str(job.pk))
    second = job_claim(job_id=str(job.pk))

    assert first is not None
    assert second is None
    assert (first.status, first.attempts, first.seq) == (JobStatus.RUNNING, 1, 2)
    assert first.started_at is not None
    assert first.lease_expires_at == first.started_at + timedelta(
        seconds=settings.JOBS_LEASE_SECONDS
    )


def test_a_scheduled_job_is_claimed_too(owner):
    # The broker holds it until its countdown; a claim is what the worker does then.
    assert job_claim(job_id=str(enqueue(owner, countdown=60).pk)) is not None


def test_jobs_not_waiting_are_not_claimed(owner):
    cancelled = enqueue(owner, countdown=60)
    job_cancel(job=cancelled)
    finished = running(owner)
    job_succeed(job_id=finished.pk, result={})

    assert job_claim(job_id=str(cancelled.pk)) is None
    assert job_claim(job_id=str(finished.pk)) is None
    assert job_claim(job_id=str(uuid.uuid4())) is None


def test_progress_of_a_running_job_is_kept_and_extends_its_lease(owner):
    job = running(owner)

    assert job_progress(job_id=job.pk, current=3, total=10, message="m" * 600) is True

    after = stored(job)
    assert (after.progress_current, after.progress_total) == (3, 10)
    assert after.progress_message == "m" * 500
    assert after.seq == job.seq + 1
    assert after.lease_expires_at is not None
    assert job.lease_expires_at is not None
    assert after.lease_expires_at >= job.lease_expires_at


def test_progress_of_a_job_not_running_is_refused_and_changes_nothing(owner):
    job = enqueue(owner, countdown=60)

    assert job_progress(job_id=job.pk, current=1, total=2, message="") is False
    assert stored(job).seq == job.seq
    assert stored(job).progress_total == 0


def test_log_lines_are_numbered_in_order_and_bounded(owner, django_capture_on_commit_callbacks):
    job = running(owner)

    with django_capture_on_commit_callbacks() as announced:
        numbers = [job_log_append(job_id=job.pk, line=text) for text in ("a", "b", "x" * 5000)]

    assert numbers == [1, 2, 3]
    lines = list(JobLogLine.objects.filter(job=job).values_list("number", "line"))
    assert lines == [(1, "a"), (2, "b"), (3, "x" * LOG_LINE_MAX)]
    assert stored(job).log_lines == 3
    assert stored(job).seq == job.seq  # a log line is not a change of state
    assert len(announced) == 3


def test_success_and_failure_finish_a_running_job_once(owner):
    done, broken = running(owner), running(owner)

    job_succeed(job_id=done.pk, result={"answer": 42})
    job_fail(job_id=broken.pk, error_type="ValueError", message="e" * 600)
    job_fail(job_id=done.pk, error_type="Late", message="ignored")  # already finished

    done, broken = stored(done), stored(broken)
    assert (done.status, done.result, done.error) == (JobStatus.SUCCEEDED, {"answer": 42}, None)
    assert broken.status == JobStatus.FAILED
    assert broken.error == {"type": "ValueError", "message": "e" * 500}
    for job in (done, broken):
        assert job.finished_at is not None
        assert job.lease_expires_at is None


def test_a_waiting_job_cannot_succeed_without_running(owner):
    job = enqueue(owner, countdown=60)

    job_succeed(job_id=job.pk, result={})

    assert stored(job).status == JobStatus.SCHEDULED


# ---------------------------------------------------------------- cancel


def test_cancelling_a_waiting_job_finishes_it_at_once(owner):
    job = enqueue(owner, countdown=60)

    cancelled = job_cancel(job=job)

    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.cancel_requested is True
    assert cancelled.finished_at is not None
    assert cancelled.seq == job.seq + 2  # the request, then the cancellation


def test_cancelling_a_running_job_asks_it_to_stop_at_its_next_check(owner):
    # given
    job = running(owner)

    # when
    asked = job_cancel(job=job)

    # then: `cancelling` until its reporter sees the request and stops it (or its worker does)
    assert (asked.status, asked.cancel_requested, asked.seq) == (
        JobStatus.CANCELLING,
        True,
        job.seq + 1,
    )
    assert job_cancel_requested(job_id=job.pk) is True
    job_mark_cancelled(job_id=job.pk)
    assert stored(job).status == JobStatus.CANCELLED


def test_a_finished_job_is_not_cancellable(owner):
    job = running(owner)
    job_succeed(job_id=job.pk, result=None)

    error = refused(job_cancel, job=stored(job))

    assert error.code == JobErrorCode.NOT_CANCELLABLE
    assert stored(job).cancel_requested is False


def test_no_cancel_is_requested_of_a_job_nobody_cancelled(owner):
    assert job_cancel_requested(job_id=enqueue(owner).pk) is False


# ---------------------------------------------------------------- reaper and dispatcher


def test_the_reaper_fails_running_jobs_whose_lease_ran_out(owner):
    # given: two running jobs whose worker stopped renewing the lease at known times
    lost, alive = running(owner), running(owner)
    lease_end = timezone.now() + timedelta(minutes=10)
    Job.objects.filter(pk=lost.pk).update(lease_expires_at=lease_end)
    Job.objects.filter(pk=alive.pk).update(lease_expires_at=lease_end + timedelta(minutes=5))
    waiting = enqueue(owner, countdown=60)

    # when: the reaper runs at the end of the first lease, then just after it
    at_the_end = jobs_reap_expired(now=lease_end)
    just_after = jobs_reap_expired(now=lease_end + timedelta(microseconds=1))
    again = jobs_reap_expired(now=lease_end + timedelta(microseconds=1))

    # then
    assert (at_the_end, just_after, again) == (0, 1, 0)
    assert stored(lost).status == JobStatus.FAILED
    assert stored(lost).error == {
        "type": "WorkerLost",
        "message": "The worker running this job stopped.",
    }
    assert stored(alive).status == JobStatus.RUNNING
    assert stored(waiting).status == JobStatus.SCHEDULED


def test_the_dispatcher_sends_waiting_jobs_once_they_are_within_the_broker_window(owner, settings):
    # given: jobs that wait in the database (beyond the broker's delay window when enqueued)
    window = timedelta(seconds=settings.JOBS_BROKER_MAX_DELAY)
    now = timezone.now()
    soon = enqueue(owner, eta=now + window + timedelta(minutes=1))
    later = enqueue(owner, eta=now + window + timedelta(minutes=30))
    cancelled = enqueue(owner, eta=now + window + timedelta(minutes=1))
    job_cancel(job=cancelled)
    assert stored(soon).dispatched_at is None

    # when: the dispatcher runs now, then two minutes later, then again at that time
    sent_now = jobs_dispatch_due(now=now)
    sent_later = jobs_dispatch_due(now=now + timedelta(minutes=2))
    sent_again = jobs_dispatch_due(now=now + timedelta(minutes=2))

    # then: only `soon`, once, when it came within the window
    assert (sent_now, sent_later, sent_again) == (0, 1, 0)
    assert stored(soon).dispatched_at is not None
    assert stored(later).dispatched_at is None
    assert stored(cancelled).dispatched_at is None


def test_the_dispatcher_sends_a_due_job_whose_message_was_never_sent(owner, settings):
    # given: a job committed (marked sent by its own INSERT) by a request that ended before
    # it sent the message
    job = enqueue(owner)
    marked = stored(job).dispatched_at
    assert marked is not None

    # when: the dispatcher runs at once, then once the job is late
    sent_at_once = jobs_dispatch_due(now=timezone.now())
    late = marked + timedelta(seconds=settings.JOBS_REDISPATCH_AFTER + 1)
    sent_when_late = jobs_dispatch_due(now=late)

    # then: not sent twice at once, but sent again once it should have started
    assert (sent_at_once, sent_when_late) == (0, 1)
    assert stored(job).dispatched_at == late


def test_the_dispatcher_sends_a_due_job_never_marked_sent(owner):
    # given: a due job that no one marked sent (a row written by hand, or by an older release)
    job = enqueue(owner)
    Job.objects.filter(pk=job.pk).update(dispatched_at=None)

    # when / then
    assert jobs_dispatch_due(now=timezone.now()) == 1
    assert stored(job).dispatched_at is not None


def test_the_dispatcher_sends_late_jobs_again_at_growing_intervals(owner, settings):
    # given: waiting jobs sent earlier that have not started (their message may be lost)
    settings.JOBS_REDISPATCH_AFTER = 60
    now = timezone.now()

    def waiting(late: float, sent_ago: float, **fields: Any) -> Job:
        return Job.objects.create(
            owner=owner, kind="demo.sleep", params={"steps": 1, "max_seconds": 0}, seq=1,
            status="scheduled",
            run_at=now - timedelta(seconds=late),
            dispatched_at=now - timedelta(seconds=sent_ago), **fields,
        )  # fmt: skip

    lost = waiting(late=90, sent_ago=95)  # sent before it was due, 90 s late
    recently_sent = waiting(late=90, sent_ago=30)
    resent_late = waiting(late=300, sent_ago=100)  # sent 200 s late: next after 200 s
    not_late_yet = waiting(late=30, sent_ago=35)
    cancelled = waiting(late=90, sent_ago=95, cancel_requested=True)

    # when
    sent = jobs_dispatch_due(now=now)

    # then: only the lost one is sent again (a claim makes the extra message harmless)
    assert sent == 1
    resent_at = Job.objects.get(pk=lost.pk).dispatched_at
    assert resent_at is not None
    assert resent_at >= now
    for job in (recently_sent, resent_late, not_late_yet, cancelled):
        assert Job.objects.get(pk=job.pk).dispatched_at == job.dispatched_at
