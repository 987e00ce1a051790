"""What the socket runtime reads of rooms (replay, gap repair), and how many queries each costs."""

from __future__ import annotations

import pytest

from chat.frames import message_frame
from chat.selectors import (
    message_frames_between,
    room_id_get,
    room_last_seq,
    room_replay,
)
from chat.services import message_post
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
        assert room_id_get(slug="lobby", viewer=None) == room.pk
    with django_assert_num_queries(1):
        assert room_id_get(slug="nowhere", viewer=None) is None
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
        replay = room_replay(room_id=room.pk, slug="lobby", viewer=None, since=since, limit=limit)

    assert replay is not None
    assert replay.last_seq == 3
    assert replay.frames == (None if replayed is None else [frames[n] for n in replayed])
