"""The reporter: a flood of progress calls becomes a few writes; cancellation is seen."""

from types import SimpleNamespace

import pytest

from jobs import reporter as reporter_module
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


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The reporter's monotonic clock, moved by the test: what it decides depends on no timing.

    Times are multiples of 1/8192 s, exact in binary, so the interval arithmetic is exact.
    """
    fake = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(reporter_module, "time", SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def test_ten_thousand_progress_calls_a_second_are_coalesced(running_job, settings, clock):
    # given: a write at most every 1/8 s
    settings.JOBS_PROGRESS_INTERVAL = 0.125
    reporter = Reporter(running_job.pk)
    seq_before = running_job.seq
    start, calls = clock.now, 10_000

    # when: ten thousand calls, 8192 a second of the reporter's clock (about 1.22 s)
    for n in range(1, calls + 1):
        clock.now = start + (n - 1) / 8192
        reporter.progress(n, 10_000_000, f"step {n}")
    reporter.flush()

    # then: a write at calls 1, 1025, ..., 9217 (one per interval: 10) and the final flush
    # (11 in all), the last value kept
    running_job.refresh_from_db()
    assert running_job.seq - seq_before == 11
    assert running_job.progress_current == calls
    assert running_job.progress_message == f"step {calls}"


def test_a_flush_with_nothing_pending_writes_nothing(running_job, settings, clock):
    settings.JOBS_PROGRESS_INTERVAL = 0.125
    reporter = Reporter(running_job.pk)
    seq_before = running_job.seq
    reporter.progress(1, 2)  # written at once: the first call

    reporter.flush()
    reporter.flush()

    running_job.refresh_from_db()
    assert running_job.seq == seq_before + 1  # that one write only
    assert running_job.progress_current == 1


def test_a_cancel_is_seen_at_the_next_check(running_job, settings):
    settings.JOBS_PROGRESS_INTERVAL = 0
    reporter = Reporter(running_job.pk)
    reporter.progress(1, 10)
    Job.objects.filter(pk=running_job.pk).update(cancel_requested=True)

    with pytest.raises(JobCancelled):
        reporter.progress(2, 10)
