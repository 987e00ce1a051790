"""Messages that change: edits and deletions as events of the room's sequence, decided once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from chat.errors import ChatError, ChatErrorCode
from chat.models import MESSAGE_MAX_LENGTH, ChangeKind, Message, MessageChange, Role, Room
from chat.selectors import message_frames_between, message_history, messages_between, room_replay
from chat.services import (
    member_add,
    member_remove,
    message_delete,
    message_edit,
    message_post,
    room_create,
)
from realtime.kernel import events
from realtime.kernel.names import room_group
from tests.factories import RoomFactory, UserFactory, poster, say
from tests.support.layer import LayerListener

pytestmark = pytest.mark.django_db


def refused(call, *args, **kwargs) -> ChatError:
    """The ChatError that `call` raises."""
    with pytest.raises(ChatError) as raised:
        call(*args, **kwargs)
    return raised.value


@pytest.fixture
def room() -> Room:
    return RoomFactory.create(slug="lobby")


def edit(room: Room, user: User | None, message: Message, body: str, **kwargs: str):
    return message_edit(
        slug=room.slug, poster=poster(user), message_id=message.pk, body=body, **kwargs
    )


def delete(room: Room, user: User | None, message: Message, **kwargs: str):
    return message_delete(slug=room.slug, poster=poster(user), message_id=message.pk, **kwargs)


# ---------------------------------------------------------------- edits


def test_an_edit_changes_the_text_and_takes_the_rooms_next_seq(room, alice):
    # given
    message = say(room, alice, "helo")
    say(room, alice, "second")
    active_at = Room.objects.get(pk=room.pk).last_message_at

    # when
    result = edit(room, alice, message, "hello")

    # then
    stored = Message.objects.get(pk=message.pk)
    assert (stored.seq, stored.body, stored.deleted) == (1, "hello", False)
    assert stored.edited_at == result.change.created_at
    assert (result.change.seq, result.change.kind, result.created) == (3, ChangeKind.EDITED, True)
    after = Room.objects.get(pk=room.pk)
    assert after.last_seq == 3
    assert after.last_message_at == active_at  # an edit is no new activity in the room list
    assert (result.message.body, result.message.edited_at) == ("hello", stored.edited_at)


def test_only_its_author_edits_a_message(room, alice, bob):
    message = say(room, alice, "mine")
    owner = UserFactory.create()
    owned = room_create(slug="owned", created_by=owner)
    theirs = say(owned, alice, "in a room someone else owns")

    assert refused(edit, room, bob, message, "bob's").code == ChatErrorCode.NOT_MESSAGE_AUTHOR
    assert refused(edit, room, None, message, "anon").code == ChatErrorCode.NOT_MESSAGE_AUTHOR
    # owners and admins delete others' messages, but never put words in their mouths
    assert refused(edit, owned, owner, theirs, "owner's").code == ChatErrorCode.NOT_MESSAGE_AUTHOR
    assert Message.objects.get(pk=message.pk).body == "mine"
    assert not MessageChange.objects.exists()
    assert Room.objects.get(pk=room.pk).last_seq == 1


def test_an_anonymous_message_is_edited_by_nobody(room, alice):
    message = say(room, None, "who am I")

    for who in (None, alice):
        assert refused(edit, room, who, message, "x").code == ChatErrorCode.NOT_MESSAGE_AUTHOR


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("", "empty"),
        ("x" * (MESSAGE_MAX_LENGTH + 1), "longer than"),
        ("nul\x00", "NUL"),
        (42, "empty"),
    ],
)
def test_an_edit_is_held_to_what_a_message_may_hold(room, alice, body, detail):
    message = say(room, alice, "fine")

    error = refused(edit, room, alice, message, body)

    assert (error.code, detail in error.detail) == (ChatErrorCode.INVALID_MESSAGE, True)
    assert Message.objects.get(pk=message.pk).body == "fine"


def test_a_retried_edit_applies_once_and_answers_the_same(room, alice):
    message = say(room, alice, "v1")
    first = edit(room, alice, message, "v2", client_id="e-1")

    again = edit(room, alice, message, "v2", client_id="e-1")

    assert (again.created, again.change.pk, again.change.seq) == (False, first.change.pk, 2)
    assert MessageChange.objects.count() == 1
    assert Room.objects.get(pk=room.pk).last_seq == 2


def test_a_client_id_names_one_change(room, alice, bob):
    mine, other = say(room, alice, "one"), say(room, alice, "two")
    bobs = say(room, bob, "bob's")
    edit(room, alice, mine, "one!", client_id="e-1")

    assert refused(edit, room, alice, other, "two!", client_id="e-1").code == (
        ChatErrorCode.CLIENT_ID_CONFLICT
    )
    assert refused(edit, room, bob, bobs, "bob!", client_id="e-1").code == (
        ChatErrorCode.CLIENT_ID_CONFLICT
    )
    # a client_id of a change is not one of a post: both may use the same text
    assert edit(room, alice, other, "two!", client_id="posted-1").created


def test_edits_spend_the_posting_budget(room, alice, settings):
    settings.CHAT_POST_RATE = "2/hour"
    message = say(room, alice, "one")
    edit(room, alice, message, "two")

    error = refused(edit, room, alice, message, "three")

    assert error.code == ChatErrorCode.RATE_LIMITED
    assert error.retry_after is not None
    assert Message.objects.get(pk=message.pk).body == "two"
    assert Room.objects.get(pk=room.pk).last_seq == 2


def test_a_retried_edit_past_the_rate_is_answered_and_spends_nothing(room, alice, settings):
    settings.CHAT_POST_RATE = "2/hour"
    message = say(room, alice, "one")
    edit(room, alice, message, "two", client_id="e-1")

    assert not edit(room, alice, message, "two", client_id="e-1").created
    assert not edit(room, alice, message, "two", client_id="e-1").created


# ---------------------------------------------------------------- deletions


def test_a_deleted_message_stays_as_a_tombstone_and_its_earlier_texts_go(room, alice):
    message = say(room, alice, "secret")
    edit(room, alice, message, "still secret")

    result = delete(room, alice, message)

    stored = Message.objects.get(pk=message.pk)
    assert (stored.body, stored.deleted, stored.seq) == ("", True, 1)
    assert (result.change.seq, result.change.kind, result.created) == (3, ChangeKind.DELETED, True)
    assert set(MessageChange.objects.values_list("body", flat=True)) == {""}
    assert Room.objects.get(pk=room.pk).last_seq == 3


def test_deleting_twice_answers_the_first_deletion(room, alice):
    message = say(room, alice, "bye")
    first = delete(room, alice, message)

    again = delete(room, alice, message, client_id="d-2")

    assert (again.created, again.change.pk) == (False, first.change.pk)
    assert Room.objects.get(pk=room.pk).last_seq == 2


def test_a_deleted_message_is_not_edited_but_an_edit_retried_is_answered(room, alice):
    message = say(room, alice, "v1")
    edit(room, alice, message, "v2", client_id="e-1")
    delete(room, alice, message)

    assert refused(edit, room, alice, message, "v3").code == ChatErrorCode.MESSAGE_DELETED
    assert refused(edit, room, alice, message, "v3").code.http_status == 409
    assert not edit(room, alice, message, "v2", client_id="e-1").created
    assert Message.objects.get(pk=message.pk).body == ""


def test_owners_and_admins_delete_anyones_message_members_their_own(alice, bob):
    owner, admin = UserFactory.create(), UserFactory.create()
    room = room_create(slug="club", kind="private", created_by=owner)
    member_add(slug="club", actor=owner, username=admin.username, role=Role.ADMIN)
    for user in (alice, bob):
        member_add(slug="club", actor=owner, username=user.username)
    messages = [say(room, alice, f"alice {n}") for n in range(3)]

    assert refused(delete, room, bob, messages[0]).code == ChatErrorCode.NOT_MESSAGE_AUTHOR
    assert refused(delete, room, None, messages[0]).code == ChatErrorCode.MESSAGE_NOT_FOUND
    assert delete(room, admin, messages[0]).created
    assert delete(room, owner, messages[1]).created
    assert delete(room, alice, messages[2]).created
    assert list(MessageChange.objects.values_list("actor", flat=True)) == [
        admin.pk,
        owner.pk,
        alice.pk,
    ]


def test_an_anonymous_poster_deletes_nothing(room, alice):
    anonymous = say(room, None, "anon")

    assert refused(delete, room, None, anonymous).code == ChatErrorCode.NOT_MESSAGE_AUTHOR
    assert refused(delete, room, alice, anonymous).code == ChatErrorCode.NOT_MESSAGE_AUTHOR


# ---------------------------------------------------------------- who may see the message


def test_a_message_one_may_not_read_is_no_message(alice, bob):
    # given: a private room of alice's; bob is no member
    room = room_create(slug="secret", kind="private", created_by=alice)
    message = say(room, alice, "private words")
    RoomFactory.create(slug="public")

    def answer(call, slug: str, message_id: int) -> tuple[str, str]:
        error = refused(call, slug=slug, poster=poster(bob), message_id=message_id, body="x")
        return error.code, error.detail

    def deletion(**kwargs):
        kwargs.pop("body")
        return message_delete(**kwargs)

    # then: the same as an unknown id in it, and as an unknown room
    for call in (message_edit, deletion):
        assert answer(call, "secret", message.pk) == (
            ChatErrorCode.MESSAGE_NOT_FOUND,
            f"No message {message.pk} in room 'secret'.",
        )
        assert answer(call, "secret", message.pk + 1)[0] == ChatErrorCode.MESSAGE_NOT_FOUND
        assert answer(call, "nowhere", message.pk)[0] == ChatErrorCode.MESSAGE_NOT_FOUND
        # a message of another room, by its id
        assert answer(call, "public", message.pk)[0] == ChatErrorCode.MESSAGE_NOT_FOUND
    assert Message.objects.get(pk=message.pk).body == "private words"


def test_a_removed_member_changes_nothing_any_more(alice, bob):
    room = room_create(slug="club", kind="private", created_by=alice)
    member_add(slug="club", actor=alice, username=bob.username)
    message = say(room, bob, "bob was here")
    member_remove(slug="club", actor=alice, user_id=bob.pk)

    assert refused(edit, room, bob, message, "x").code == ChatErrorCode.MESSAGE_NOT_FOUND
    assert refused(delete, room, bob, message).code == ChatErrorCode.MESSAGE_NOT_FOUND


# ---------------------------------------------------------------- what readers see


@pytest.fixture
def listener(room: Room) -> Iterator[LayerListener]:
    member = LayerListener()
    member.join(room_group(room.slug))
    yield member
    member.close()


def test_changes_go_to_the_room_after_commit_as_declared_frames(
    room, alice, listener, django_capture_on_commit_callbacks
):
    message = say(room, alice, "v1")
    with django_capture_on_commit_callbacks(execute=True):
        edited = edit(room, alice, message, "v2")
        delete(room, alice, message)

    heard = listener.wait_for(lambda got: len(got) == 2)

    assert [event["type"] for event in heard] == ["room.change", "room.change"]
    assert [event["seq"] for event in heard] == [2, 3]
    assert heard[0]["frame"] == {
        "type": "message.edited",
        "channel": "room:lobby",
        "room": "lobby",
        "seq": 2,
        "id": message.pk,
        "message_seq": 1,
        "body": "v2",
        "edited_at": edited.change.created_at.isoformat(),
    }
    assert heard[1]["frame"] == {
        "type": "message.deleted",
        "channel": "room:lobby",
        "room": "lobby",
        "seq": 3,
        "id": message.pk,
        "message_seq": 1,
    }
    for event in heard:
        events.server_frame_adapter.validate_python(event["frame"])


def test_a_refused_change_sends_nothing(
    room, alice, bob, listener, django_capture_on_commit_callbacks
):
    message = say(room, alice, "v1")
    with django_capture_on_commit_callbacks(execute=True):
        refused(edit, room, bob, message, "v2")
        message_post(room=room, poster=poster(alice), body="after")

    heard = listener.wait_for(lambda got: any(event["seq"] == 2 for event in got))

    assert [event["type"] for event in heard] == ["room.message"]


def test_history_shows_current_text_with_gaps_where_changes_took_seqs(room, alice):
    first, second = say(room, alice, "one"), say(room, alice, "two")
    edit(room, alice, first, "one, edited")
    delete(room, alice, second)
    say(room, alice, "three")

    page = message_history(slug="lobby", viewer=None)

    assert page is not None
    assert page.last_seq == 5
    assert [(m["seq"], m["body"], m["deleted"]) for m in page.messages] == [
        (1, "one, edited", False),
        (2, "", True),
        (5, "three", False),
    ]
    assert page.messages[0]["edited_at"] is not None
    assert page.messages[2]["edited_at"] is None


def test_replay_carries_messages_as_they_are_now_and_every_change_in_seq_order(room, alice):
    first, second = say(room, alice, "one"), say(room, alice, "two")
    edit(room, alice, first, "one, edited")
    edit(room, alice, second, "two, edited")
    delete(room, alice, second)
    say(room, alice, "three")

    replay = room_replay(room_id=room.pk, slug="lobby", viewer=None, since=1, limit=100)

    assert replay is not None
    assert replay.last_seq == 6
    assert [(f["seq"], f["type"], f.get("body")) for f in replay.frames or []] == [
        (2, "chat.message", ""),  # deleted since: a tombstone
        (3, "message.edited", "one, edited"),
        (4, "message.edited", ""),  # the text of an edit goes with its message
        (5, "message.deleted", None),
        (6, "chat.message", "three"),
    ]
    for frame in replay.frames or []:
        events.server_frame_adapter.validate_python(frame)


def test_frames_between_read_changes_only_when_some_seq_is_not_a_message(
    room, alice, django_assert_num_queries
):
    message = say(room, alice, "one")
    say(room, alice, "two")
    edit(room, alice, message, "one!")

    with django_assert_num_queries(1):
        messages_only = message_frames_between(room_id=room.pk, slug="lobby", after=0, upto=2)
    with django_assert_num_queries(2):
        with_change = message_frames_between(room_id=room.pk, slug="lobby", after=0, upto=3)

    assert [frame["seq"] for frame in messages_only] == [1, 2]
    assert [frame["type"] for frame in with_change] == [
        "chat.message",
        "chat.message",
        "message.edited",
    ]


def test_an_export_leaves_deleted_messages_out(room, alice):
    kept, gone = say(room, alice, "kept"), say(room, alice, "gone")
    delete(room, alice, gone)

    exported = messages_between(room_id=room.pk, after=0, upto=3, deleted=False)

    assert [message.pk for message in exported] == [kept.pk]
    assert len(messages_between(room_id=room.pk, after=0, upto=3)) == 2
