"""Reads of the chat domain: history by `seq`, the replay range, rooms by activity."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Room
from chat.selectors import (
    HISTORY_MAX_LIMIT,
    message_history,
    messages_between,
    room_get,
    room_list,
)
from chat.services import message_post
from tests.factories import RoomFactory, poster

pytestmark = pytest.mark.django_db


@pytest.fixture
def room() -> Room:
    """A room with ten messages, seq 1 to 10."""
    room = RoomFactory.create()
    for n in range(1, 11):
        message_post(room=room, poster=poster(None), body=f"m{n}")
    return room


def seqs(messages) -> list[int]:
    return [message.seq for message in messages]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ({}, list(range(1, 11))),
        ({"limit": 3}, [8, 9, 10]),  # the newest, oldest first
        ({"after": 7}, [8, 9, 10]),
        ({"after": 2, "limit": 2}, [3, 4]),  # the oldest after `after`
        ({"before": 4}, [1, 2, 3]),
        ({"before": 6, "limit": 2}, [4, 5]),  # the newest before `before`
        ({"after": 2, "before": 6}, [3, 4, 5]),
        ({"after": 10}, []),
        ({"before": 1}, []),
    ],
)
def test_history_windows_by_seq(room, window, expected):
    assert seqs(message_history(room=room, **window)) == expected


@pytest.mark.parametrize(
    ("limit", "expected"), [(0, [10]), (-5, [10]), (10**6, list(range(1, 11)))]
)
def test_history_limit_is_kept_between_one_and_the_maximum(room, limit, expected):
    assert seqs(message_history(room=room, limit=limit)) == expected


def test_history_never_returns_more_than_its_maximum():
    # given: more messages than one page may hold
    room = RoomFactory.create()
    for n in range(HISTORY_MAX_LIMIT + 5):
        message_post(room=room, poster=poster(None), body=f"m{n}")

    # when
    page = message_history(room=room, limit=HISTORY_MAX_LIMIT + 5)

    # then: the newest ones
    assert seqs(page) == list(range(6, HISTORY_MAX_LIMIT + 6))


def test_history_is_one_room_only(room):
    other = RoomFactory.create()
    message_post(room=other, poster=poster(None), body="elsewhere")

    assert seqs(message_history(room=other)) == [1]
    assert seqs(message_history(room=room)) == list(range(1, 11))


def test_history_messages_know_their_room_without_another_query(room, django_assert_num_queries):
    # given
    with django_assert_num_queries(1):
        page = message_history(room=room)

    # when / then: what a serializer reads of each message's room is already there
    with django_assert_num_queries(0):
        assert {message.room.slug for message in page} == {room.slug}


def test_messages_between_is_after_exclusive_and_upto_inclusive(room):
    assert seqs(messages_between(room_id=room.pk, after=3, upto=6)) == [4, 5, 6]
    assert seqs(messages_between(room_id=room.pk, after=0, upto=10)) == list(range(1, 11))
    assert seqs(messages_between(room_id=room.pk, after=6, upto=6)) == []
    assert seqs(messages_between(room_id=room.pk, after=8, upto=99)) == [9, 10]


def test_room_list_most_recently_active_first_then_by_slug():
    # given: two rooms never written to, and two last written to at known times
    now = timezone.now()
    RoomFactory.create(slug="b-quiet")
    RoomFactory.create(slug="a-quiet")
    RoomFactory.create(slug="older", last_message_at=now - timedelta(minutes=5))
    RoomFactory.create(slug="newer", last_message_at=now)

    # when
    slugs = [room.slug for room in room_list()]

    # then: rooms with activity, newest first, before the silent ones, which go by slug
    assert slugs == ["newer", "older", "a-quiet", "b-quiet"]


def test_a_post_moves_its_room_to_the_top():
    first, second = RoomFactory.create(slug="first"), RoomFactory.create(slug="second")
    message_post(room=first, poster=poster(None), body="early")
    message_post(room=second, poster=poster(None), body="later")
    assert [room.slug for room in room_list()][:2] == ["second", "first"]

    message_post(room=first, poster=poster(None), body="latest")

    assert [room.slug for room in room_list()][:2] == ["first", "second"]


def test_room_get_by_slug_or_none():
    room = RoomFactory.create(slug="here")

    assert room_get(slug="here") == room
    assert room_get(slug="nowhere") is None
