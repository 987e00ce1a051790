"""What the socket runtime reads of jobs (visibility, snapshots, catch-up), and its queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job
from jobs.selectors import (
    job_is_visible,
    job_state_get,
    job_state_model,
    job_states,
    job_states_changed_since,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return UserFactory.create()


def test_whether_a_job_is_visible_takes_one_query(owner, django_assert_num_queries):
    job = Job.objects.create(owner=owner, kind="demo.sleep")
    stranger = UserFactory.create()

    with django_assert_num_queries(1):
        assert job_is_visible(job_id=str(job.id), viewer=owner)
    with django_assert_num_queries(1):
        assert not job_is_visible(job_id=str(job.id), viewer=stranger)
    with django_assert_num_queries(0):
        assert not job_is_visible(job_id="not-a-uuid", viewer=owner)


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
