"""Writes of the chat domain: rooms, and posts numbered by `seq` with no gap."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from chat.errors import ChatError, ChatErrorCode
from chat.frames import message_event
from chat.models import MESSAGE_MAX_LENGTH, Message, PostingBudget, Room
from chat.services import Post, PostResult, message_post, messages_post, room_create, room_ensure
from chat.tasks import clear_expired_budgets
from realtime.kernel.names import room_channel
from tests.factories import RoomFactory, UserFactory, poster

pytestmark = pytest.mark.django_db


def refused(call, *args, **kwargs) -> ChatErrorCode:
    """The code of the ChatError that `call` raises."""
    with pytest.raises(ChatError) as raised:
        call(*args, **kwargs)
    return raised.value.code


# ---------------------------------------------------------------- rooms


def test_room_create_keeps_slug_title_and_creator():
    user = UserFactory.create()

    room = room_create(slug="lobby", title="The Lobby", created_by=user)

    stored = Room.objects.get(pk=room.pk)
    assert (stored.slug, stored.title, stored.created_by) == ("lobby", "The Lobby", user)
    assert (stored.last_seq, stored.last_message_at) == (0, None)


def test_room_create_titles_a_room_by_its_slug_when_untitled():
    assert room_create(slug="untitled").title == "untitled"


@pytest.mark.parametrize("slug", ["", "café", "a" * 65, "has space", "dot.ted", "semi;colon"])
def test_room_create_refuses_slugs_that_groups_cannot_carry(slug):
    assert refused(room_create, slug=slug) == ChatErrorCode.INVALID_ROOM
    assert not Room.objects.exists()


def test_room_create_refuses_a_title_too_long():
    assert refused(room_create, slug="ok", title="t" * 201) == ChatErrorCode.INVALID_ROOM


def test_room_create_twice_is_room_exists():
    room_create(slug="lobby")

    assert refused(room_create, slug="lobby", title="Again") == ChatErrorCode.ROOM_EXISTS
    assert Room.objects.get().title == "lobby"


def test_room_ensure_returns_the_room_that_exists():
    room = RoomFactory.create(slug="here", title="Here")

    assert room_ensure(slug="here", title="Ignored") == room
    assert Room.objects.get().title == "Here"


def test_room_ensure_creates_a_missing_room():
    room = room_ensure(slug="new-room")

    assert Room.objects.get(slug="new-room") == room


def test_room_ensure_still_refuses_an_invalid_slug():
    assert refused(room_ensure, slug="not valid") == ChatErrorCode.INVALID_ROOM


# ---------------------------------------------------------------- posting


def test_posts_are_numbered_one_by_one_per_room():
    # given
    lobby, other = RoomFactory.create(), RoomFactory.create()

    # when
    seqs = [
        message_post(room=lobby, poster=poster(None), body=f"m{n}").message.seq for n in range(5)
    ]
    elsewhere = message_post(room=other, poster=poster(None), body="first there").message.seq

    # then
    assert seqs == [1, 2, 3, 4, 5]
    assert elsewhere == 1
    lobby.refresh_from_db()
    assert lobby.last_seq == 5
    last = Message.objects.get(room=lobby, seq=5)
    assert lobby.last_message_at == last.created_at


def test_a_post_numbers_from_the_database_not_from_a_stale_room_object():
    # given: a room object read before someone else posted
    stale = RoomFactory.create()
    message_post(
        room=Room.objects.get(pk=stale.pk),
        poster=poster(None),
        body="someone else",
    )

    # when
    message = message_post(room=stale, poster=poster(None), body="mine").message

    # then
    assert message.seq == 2


def test_a_post_keeps_its_author_and_body_exactly():
    user = UserFactory.create(username="alice")
    body = "  <b>bold</b>\n\ttabbed  "

    message = message_post(room=RoomFactory.create(), poster=poster(user), body=body).message

    stored = Message.objects.get(pk=message.pk)
    assert (stored.author, stored.author_name, stored.body) == (user, "alice", body)


def test_an_anonymous_post_is_by_anonymous_when_the_setting_allows(settings):
    settings.SWITCHBOARD_ANONYMOUS_POSTING = True

    message = message_post(room=RoomFactory.create(), poster=poster(None), body="hi").message

    assert (message.author, message.author_name) == (None, "anonymous")


def test_anonymous_posting_is_refused_when_the_setting_forbids_it(settings):
    # given
    settings.SWITCHBOARD_ANONYMOUS_POSTING = False
    room = RoomFactory.create()

    # when
    code = refused(message_post, room=room, poster=poster(None), body="hi")

    # then: refused, and a signed-in user may still post
    assert code == ChatErrorCode.POSTING_NOT_ALLOWED
    assert not Message.objects.exists()
    assert message_post(room=room, poster=poster(UserFactory.create()), body="hi").message.seq == 1


@pytest.mark.parametrize(
    "body",
    ["", "x" * (MESSAGE_MAX_LENGTH + 1), "nul\x00inside", None, 5, ["a list"]],
    ids=["empty", "too-long", "nul", "none", "number", "list"],
)
def test_bodies_outside_the_rules_are_refused_and_take_no_seq(body):
    room = RoomFactory.create()

    assert refused(message_post, room=room, poster=poster(None), body=body) == (
        ChatErrorCode.INVALID_MESSAGE
    )
    assert not Message.objects.exists()
    assert message_post(room=room, poster=poster(None), body="next").message.seq == 1


def test_a_body_of_the_maximum_length_is_taken():
    body = "x" * MESSAGE_MAX_LENGTH

    message = message_post(room=RoomFactory.create(), poster=poster(None), body=body).message

    assert Message.objects.get(pk=message.pk).body == body


def test_a_retry_with_the_same_client_id_returns_the_first_message():
    # given
    user, room = UserFactory.create(), RoomFactory.create()
    first = message_post(room=room, poster=poster(user), body="hello", client_id="k1")

    # when: the client did not hear back and sends it again
    retry = message_post(room=room, poster=poster(user), body="hello", client_id="k1")

    # then
    assert first.created is True
    assert retry.created is False
    assert retry.message.pk == first.message.pk
    assert Message.objects.count() == 1
    room.refresh_from_db()
    assert room.last_seq == 1


def test_a_retry_returns_the_first_message_even_with_another_body():
    user, room = UserFactory.create(), RoomFactory.create()
    message_post(room=room, poster=poster(user), body="first", client_id="k1")

    retry = message_post(room=room, poster=poster(user), body="edited", client_id="k1")

    assert (retry.created, retry.message.body) == (False, "first")


def test_a_client_id_is_per_room():
    user = UserFactory.create()
    lobby, other = RoomFactory.create(), RoomFactory.create()
    message_post(room=lobby, poster=poster(user), body="here", client_id="k1")

    elsewhere = message_post(room=other, poster=poster(user), body="there", client_id="k1")

    assert elsewhere.created is True


@pytest.mark.parametrize("second", ["another user", "anonymous"])
def test_a_client_id_of_another_author_is_a_conflict(second):
    # given
    room, owner = RoomFactory.create(), UserFactory.create()
    message_post(room=room, poster=poster(owner), body="mine", client_id="k1")
    author = UserFactory.create() if second == "another user" else None

    # when
    code = refused(
        message_post,
        room=room,
        poster=poster(author),
        body="theirs",
        client_id="k1",
    )

    # then
    assert code == ChatErrorCode.CLIENT_ID_CONFLICT
    assert list(Message.objects.values_list("body", flat=True)) == ["mine"]


def test_a_post_is_announced_once_after_commit_and_a_retry_or_refusal_not_at_all(
    django_capture_on_commit_callbacks,
):
    room, user = RoomFactory.create(), UserFactory.create()

    with django_capture_on_commit_callbacks() as posted:
        message_post(room=room, poster=poster(user), body="hello", client_id="k1")
    with django_capture_on_commit_callbacks() as retried:
        message_post(room=room, poster=poster(user), body="hello", client_id="k1")
    with django_capture_on_commit_callbacks() as refusal, pytest.raises(ChatError):
        message_post(room=room, poster=poster(user), body="")

    # the message to the room's sockets, and the room's activity to its members' room lists
    assert (len(posted), len(retried), len(refusal)) == (2, 0, 0)


def test_the_event_of_a_message_carries_its_seq_and_its_frame():
    user = UserFactory.create(username="alice")
    room = RoomFactory.create(slug="lobby")
    message = message_post(room=room, poster=poster(user), body="hi", client_id="c1").message

    event = message_event(message, room.slug)

    assert event == {
        "type": "room.message",
        "room": "lobby",
        "seq": 1,
        "frame": {
            "type": "chat.message",
            "channel": room_channel("lobby"),
            "room": "lobby",
            "seq": 1,
            "id": message.pk,
            "author": {"id": user.pk, "username": "alice"},
            "author_name": "alice",
            "body": "hi",
            "created_at": message.created_at.isoformat(),
            "client_id": "c1",
            "edited_at": None,
            "deleted": False,
        },
    }


@pytest.mark.django_db(transaction=True)
def test_simultaneous_posts_from_many_threads_leave_no_gap_and_no_repeat():
    # given: several writers, each with its own database connection, on one room
    room = RoomFactory.create()
    writers, posts_each = 4, 10
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(posts_each):
                message_post(
                    room=room,
                    poster=poster(None),
                    body=f"writer {n} post {i}",
                )
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: seq 1..40, each once, and each writer's posts in the order it made them
    assert errors == []
    rows = list(Message.objects.filter(room=room).order_by("seq").values_list("seq", "body"))
    assert [seq for seq, _ in rows] == list(range(1, writers * posts_each + 1))
    for n in range(writers):
        mine = [body for _, body in rows if body.startswith(f"writer {n} ")]
        assert mine == [f"writer {n} post {i}" for i in range(posts_each)]
    room.refresh_from_db()
    assert room.last_seq == writers * posts_each


# ---------------------------------------------------------------- posts in one batch


def codes(outcomes: list[PostResult | ChatError]) -> list[str | int]:
    """Each outcome: the message's seq, or the refusal's code."""
    return [o.code.value if isinstance(o, ChatError) else o.message.seq for o in outcomes]


def test_a_batch_writes_each_room_in_order_and_answers_each_post():
    # given
    north, south = RoomFactory.create(), RoomFactory.create()
    alice, bob = poster(UserFactory.create()), poster(UserFactory.create())

    # when: one batch with posts to two rooms, one to no room, a bad body, a repeat of a
    # client_id by its author, and the same client_id by someone else
    outcomes = messages_post(
        [
            Post(north.slug, alice, "n1", "a1"),
            Post(south.slug, alice, "s1"),
            Post("nowhere", alice, "lost"),
            Post(north.slug, bob, "n2"),
            Post(north.slug, alice, ""),
            Post(north.slug, alice, "n1 again", "a1"),
            Post(north.slug, bob, "mine", "a1"),
        ]
    )

    # then
    assert codes(outcomes) == [1, 1, "not_found", 2, "invalid_message", 1, "client_id_conflict"]
    assert [o.created for o in outcomes if isinstance(o, PostResult)] == [True, True, True, False]
    assert outcomes[5].message.pk == outcomes[0].message.pk  # type: ignore[union-attr]
    assert list(north.messages.values_list("seq", "body")) == [(1, "n1"), (2, "n2")]
    north.refresh_from_db()
    assert north.last_seq == 2


def test_a_batch_spends_each_posters_budget_in_order(settings):
    # given: two posts an hour
    settings.CHAT_POST_RATE = "2/hour"
    room = RoomFactory.create()
    alice, bob = poster(UserFactory.create()), poster(UserFactory.create())

    # when: alice sends four in one batch, one of them to a room that does not exist
    outcomes = messages_post(
        [
            Post("nowhere", alice, "lost"),
            Post(room.slug, alice, "one"),
            Post(room.slug, bob, "bob's"),
            Post(room.slug, alice, "two"),
            Post(room.slug, alice, "three"),
        ]
    )

    # then: the post to no room spent nothing; her first two were taken, the third refused
    assert codes(outcomes) == ["not_found", 1, 2, 3, "rate_limited"]
    refusal = outcomes[4]
    assert isinstance(refusal, ChatError)
    assert refusal.retry_after is not None
    assert 1 <= refusal.retry_after <= 3600
    # ...and the refused one was not counted either: still refused, not further behind
    assert codes(messages_post([Post(room.slug, alice, "four")])) == ["rate_limited"]


def test_budgets_no_longer_counting_are_cleared(settings):
    # given: a budget spent now, and one last spent three periods ago
    settings.CHAT_POST_RATE = "5/min"
    room = RoomFactory.create()
    message_post(room=room, poster=poster(None), body="now")
    PostingBudget.objects.create(who="addr:192.0.2.9", period_no=1, hits=3, earlier_hits=0)

    # when
    deleted = clear_expired_budgets()

    # then
    assert deleted == 1
    assert list(PostingBudget.objects.values_list("who", flat=True)) == ["addr:127.0.0.1"]
