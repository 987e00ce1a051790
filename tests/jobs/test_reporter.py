"""The reporter: a flood of progress calls becomes a few writes; cancellation is seen."""

import time

import pytest

from jobs.models import Job
from jobs.reporter import JobCancelled, Reporter
from jobs.services import job_claim
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def running_job() -> Job:
    job = Job.objects.create(owner=UserFactory.create(), kind="demo.sleep", params={})
    claimed = job_claim(job_id=str(job.pk))
    assert claimed is not None
    return claimed


def test_ten_thousand_progress_calls_a_second_are_coalesced(running_job, settings):
    # given
    settings.JOBS_PROGRESS_INTERVAL = 0.1
    reporter = Reporter(running_job.pk)
    seq_before = running_job.seq

    # when: as fast as a loop can call it, for about half a second
    start = time.monotonic()
    calls = 0
    while time.monotonic() - start < 0.5:
        calls += 1
        reporter.progress(calls, 10_000_000, f"step {calls}")
    reporter.flush()
    elapsed = time.monotonic() - start

    # then: one write per interval (plus the final flush), the last value kept
    running_job.refresh_from_db()
    writes = running_job.seq - seq_before
    assert calls > 5_000
    assert writes <= elapsed / 0.1 + 2
    assert running_job.progress_current == calls
    assert running_job.progress_message == f"step {calls}"


def test_a_cancel_is_seen_at_the_next_check(running_job, settings):
    settings.JOBS_PROGRESS_INTERVAL = 0
    reporter = Reporter(running_job.pk)
    reporter.progress(1, 10)
    Job.objects.filter(pk=running_job.pk).update(cancel_requested=True)

    with pytest.raises(JobCancelled):
        reporter.progress(2, 10)
