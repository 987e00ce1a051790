"""What the socket runtime reads of jobs (visibility, snapshots, catch-up), and its queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from jobs.models import Job
from jobs.selectors import (
    job_readable,
    job_state_get,
    job_state_model,
    job_states,
    job_states_changed_since,
)
from jobs.services import job_share_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return UserFactory.create()


def test_who_may_read_a_job_is_decided_in_one_or_two_queries(owner, django_assert_num_queries):
    job = Job.objects.create(owner=owner, kind="demo.sleep")
    other = Job.objects.create(owner=owner, kind="demo.sleep")
    stranger = UserFactory.create()
    share, token = job_share_create(job=job, owner=owner, expires_in=3600)
    anonymous = AnonymousUser()

    def readable(job_id, viewer, token=None):
        found = job_readable(job_id=str(job_id), viewer=viewer, share_token=token)
        return None if found is None else (found.job.pk, found.share)

    with django_assert_num_queries(1):
        assert readable(job.id, owner) == (job.pk, None)
    with django_assert_num_queries(1):
        assert readable(job.id, stranger) is None
    with django_assert_num_queries(1):
        assert readable(job.id, None, token) == (job.pk, share)
    with django_assert_num_queries(1):
        assert readable(job.id, anonymous, token) == (job.pk, share)
    with django_assert_num_queries(1):
        assert readable(other.id, anonymous, token) is None  # the link is to another job
    with django_assert_num_queries(2):
        assert readable(other.id, owner, token) == (other.pk, None)  # its owner, all the same
    with django_assert_num_queries(2):
        assert readable(other.id, stranger, token) is None
    with django_assert_num_queries(0):
        assert readable("not-a-uuid", owner) is None
        assert readable(job.id, None, "x" * 101) is None


def test_job_states_take_one_query(owner, django_assert_num_queries):
    jobs = [Job.objects.create(owner=owner, kind="demo.sleep", seq=n) for n in (1, 2)]

    with django_assert_num_queries(1):
        assert job_state_get(job_id=str(jobs[0].id)) == job_state_model(jobs[0])
    with django_assert_num_queries(1):
        states = job_states(job_ids=[str(job.id) for job in jobs])
    with django_assert_num_queries(0):
        assert job_states(job_ids=[]) == []

    assert sorted(states, key=lambda state: state.seq) == [job_state_model(job) for job in jobs]


def test_an_owners_changed_jobs_take_one_query_newest_first(owner, django_assert_num_queries):
    now = timezone.now()

    def enqueued(ago: timedelta, job_owner=owner) -> Job:
        at = now - ago
        return Job.objects.create(owner=job_owner, kind="demo.sleep", created_at=at, run_at=at)

    old = enqueued(timedelta(hours=2))
    older_change = enqueued(timedelta(minutes=2))
    newest = enqueued(timedelta(0))
    enqueued(timedelta(0), job_owner=UserFactory.create())  # someone else's

    with django_assert_num_queries(1):
        states = job_states_changed_since(
            owner_id=owner.pk, since=now - timedelta(minutes=5), limit=10
        )

    assert [state.id for state in states] == [str(newest.id), str(older_change.id)]
    assert str(old.id) not in [state.id for state in states]
