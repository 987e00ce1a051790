"""Reads of the chat domain: history by `seq`, the replay range, rooms by activity."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.frames import message_model
from chat.models import Message, Room
from chat.selectors import (
    HISTORY_MAX_LIMIT,
    HistoryPage,
    VisibleRoom,
    message_history,
    messages_between,
    room_get,
    room_list,
)
from chat.services import message_post
from realtime.kernel import events
from tests.factories import RoomFactory, UserFactory, poster

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


def history(room: Room, **window) -> list[int]:
    """The seqs of a page of the room's history."""
    page = message_history(slug=room.slug, viewer=None, **window)
    assert page is not None
    return [message["seq"] for message in page.messages]


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
    assert history(room, **window) == expected


@pytest.mark.parametrize(
    ("limit", "expected"), [(0, [10]), (-5, [10]), (10**6, list(range(1, 11)))]
)
def test_history_limit_is_kept_between_one_and_the_maximum(room, limit, expected):
    assert history(room, limit=limit) == expected


def test_history_never_returns_more_than_its_maximum():
    # given: more messages than one page may hold
    room = RoomFactory.create()
    for n in range(HISTORY_MAX_LIMIT + 5):
        message_post(room=room, poster=poster(None), body=f"m{n}")

    # when
    page = history(room, limit=HISTORY_MAX_LIMIT + 5)

    # then: the newest ones
    assert page == list(range(6, HISTORY_MAX_LIMIT + 6))


def test_history_is_one_room_only(room):
    other = RoomFactory.create()
    message_post(room=other, poster=poster(None), body="elsewhere")

    assert history(other) == [1]
    assert history(room) == list(range(1, 11))


def test_a_page_of_history_is_one_query_with_the_rooms_last_seq(room, django_assert_num_queries):
    with django_assert_num_queries(1):
        page = message_history(slug=room.slug, viewer=None, before=4)

    assert page is not None
    assert page.last_seq == 10
    assert [message["seq"] for message in page.messages] == [1, 2, 3]


@pytest.mark.parametrize(("window", "last_seq"), [({"after": 10}, 10), ({"before": 1}, 10)])
def test_an_empty_page_asks_the_room_for_its_last_seq(
    room, django_assert_num_queries, window, last_seq
):
    with django_assert_num_queries(2):
        page = message_history(slug=room.slug, viewer=None, **window)

    assert page == HistoryPage(messages=[], last_seq=last_seq)


def test_the_history_of_a_room_never_written_to_is_empty_and_of_no_room_none(
    django_assert_num_queries,
):
    RoomFactory.create(slug="quiet")

    with django_assert_num_queries(2):
        assert message_history(slug="quiet", viewer=None) == HistoryPage(messages=[], last_seq=0)
    with django_assert_num_queries(2):
        assert message_history(slug="nowhere", viewer=None) is None


def test_each_message_of_a_page_is_its_chat_message_frame_without_the_envelope(room):
    # given: a signed-in author's message with a client_id beside the anonymous ones
    author = UserFactory.create()
    message_post(room=room, poster=poster(author), body="signed é \u2028", client_id="c-1")

    # when
    page = message_history(slug=room.slug, viewer=None)

    # then: every body is what the declared frame gives, field for field and in order
    assert page is not None
    stored = {message.seq: message for message in Message.objects.filter(room=room)}
    for body in page.messages:
        frame = message_model(stored[body["seq"]], room.slug)
        declared = frame.model_dump(mode="json", exclude=set(events.FRAME_ENVELOPE))
        assert list(body.items()) == list(declared.items())
    assert page.messages[-1]["author"] == {"id": author.pk, "username": author.username}
    assert page.messages[-1]["client_id"] == "c-1"


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
    slugs = [seen.room.slug for seen in room_list(viewer=None)]

    # then: rooms with activity, newest first, before the silent ones, which go by slug
    assert slugs == ["newer", "older", "a-quiet", "b-quiet"]


def test_a_post_moves_its_room_to_the_top():
    first, second = RoomFactory.create(slug="first"), RoomFactory.create(slug="second")
    message_post(room=first, poster=poster(None), body="early")
    message_post(room=second, poster=poster(None), body="later")
    assert [seen.room.slug for seen in room_list(viewer=None)][:2] == ["second", "first"]

    message_post(room=first, poster=poster(None), body="latest")

    assert [seen.room.slug for seen in room_list(viewer=None)][:2] == ["first", "second"]


def test_room_get_by_slug_or_none():
    room = RoomFactory.create(slug="here")

    assert room_get(slug="here", viewer=None) == VisibleRoom(room, None)
    assert room_get(slug="nowhere", viewer=None) is None
