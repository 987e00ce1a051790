"""What the socket runtime reads from the database, and how many queries each read costs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.selectors import (
    message_frames_between,
    room_id_get,
    room_last_seq,
    room_replay,
)
from chat.services import message_frame, message_post
from jobs.models import Job
from jobs.selectors import (
    job_is_visible,
    job_state_get,
    job_state_model,
    job_states,
    job_states_changed_since,
)
from tests.factories import RoomFactory, UserFactory, poster

pytestmark = pytest.mark.django_db


@pytest.fixture
def room_with_three_messages():
    room = RoomFactory.create(slug="lobby")
    author = UserFactory.create()
    frames = [
        message_frame(
            message_post(room=room, poster=poster(author), body=f"m{n}").message,
            room.slug,
        )
        for n in range(1, 4)
    ]
    return room, frames


def test_a_rooms_id_and_last_seq_take_one_query_each(
    room_with_three_messages, django_assert_num_queries
):
    room, _ = room_with_three_messages

    with django_assert_num_queries(1):
        assert room_id_get(slug="lobby") == room.pk
    with django_assert_num_queries(1):
        assert room_id_get(slug="nowhere") is None
    with django_assert_num_queries(1):
        assert room_last_seq(room_id=room.pk) == 3


def test_the_frames_of_a_gap_take_one_query(room_with_three_messages, django_assert_num_queries):
    room, frames = room_with_three_messages

    with django_assert_num_queries(1):
        between = message_frames_between(room_id=room.pk, slug="lobby", after=1, upto=3)

    assert between == frames[1:]


@pytest.mark.parametrize(
    ("since", "limit", "queries", "replayed"),
    [
        (None, 500, 1, []),  # no `since`: live from now, nothing to replay
        (1, 500, 2, [1, 2]),  # the frames after `since`, in order
        (3, 500, 2, []),  # up to date
        (0, 2, 1, None),  # more than `limit` behind: resync over REST
        (4, 500, 1, None),  # ahead of the room: resync over REST
    ],
)
def test_a_replay_takes_two_queries_at_most(
    room_with_three_messages, django_assert_num_queries, since, limit, queries, replayed
):
    room, frames = room_with_three_messages

    with django_assert_num_queries(queries):
        replay = room_replay(room_id=room.pk, slug="lobby", since=since, limit=limit)

    assert replay.last_seq == 3
    assert replay.frames == (None if replayed is None else [frames[n] for n in replayed])


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
