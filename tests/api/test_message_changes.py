"""Editing and deleting messages over REST, hostile cases included: another's message, a private
room guessed by a stranger (answered byte for byte as an unknown message), bodies out of bounds."""

from __future__ import annotations

import pytest

from chat.models import MESSAGE_MAX_LENGTH, Message, MessageChange, Room
from chat.services import member_add, room_create
from tests.api.test_members import client_of
from tests.factories import RoomFactory, say

pytestmark = pytest.mark.django_db


@pytest.fixture
def room() -> Room:
    return RoomFactory.create(slug="lobby")


def url(slug: str, message_id: int) -> str:
    return f"/api/rooms/{slug}/messages/{message_id}/"


def test_the_author_edits_and_gets_the_message_as_it_now_is(room, alice):
    message = say(room, alice, "helo")

    response = client_of(alice).patch(url("lobby", message.pk), {"body": "hello"}, "json")

    assert response.status_code == 200
    body = response.json()
    assert body | {"created_at": None, "edited_at": None} == {
        "room": "lobby",
        "seq": 1,
        "id": message.pk,
        "author": {"id": alice.pk, "username": "alice"},
        "author_name": "alice",
        "body": "hello",
        "created_at": None,
        "client_id": None,
        "edited_at": None,
        "deleted": False,
    }
    assert body["edited_at"] is not None
    history = client_of(None).get("/api/rooms/lobby/messages/").json()
    assert history["results"] == [body]
    assert history["last_seq"] == 2


def test_a_retried_edit_applies_once(room, alice):
    message = say(room, alice, "v1")
    api = client_of(alice)

    first = api.patch(url("lobby", message.pk), {"body": "v2", "client_id": "e1"}, "json")
    again = api.patch(url("lobby", message.pk), {"body": "v2", "client_id": "e1"}, "json")

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert MessageChange.objects.count() == 1
    assert Room.objects.get(pk=room.pk).last_seq == 2


def test_the_author_deletes_and_a_tombstone_stays(room, alice):
    message = say(room, alice, "oops")

    response = client_of(alice).delete(url("lobby", message.pk))
    again = client_of(alice).delete(url("lobby", message.pk))

    assert (response.status_code, response.content) == (204, b"")
    assert again.status_code == 204
    (tombstone,) = client_of(None).get("/api/rooms/lobby/messages/").json()["results"]
    assert (tombstone["seq"], tombstone["body"], tombstone["deleted"]) == (1, "", True)
    assert Room.objects.get(pk=room.pk).last_seq == 2  # the second delete changed nothing


def test_editing_a_deleted_message_is_a_conflict(room, alice):
    message = say(room, alice, "gone soon")
    client_of(alice).delete(url("lobby", message.pk))

    response = client_of(alice).patch(url("lobby", message.pk), {"body": "back"}, "json")

    assert response.status_code == 409
    assert response.json() == {
        "code": "message_deleted",
        "detail": "A deleted message is not edited.",
    }


def test_nobody_edits_or_deletes_anothers_message(room, alice, bob):
    message = say(room, alice, "mine")

    edited = client_of(bob).patch(url("lobby", message.pk), {"body": "bob's"}, "json")
    deleted = client_of(bob).delete(url("lobby", message.pk))
    anonymous = client_of(None).patch(url("lobby", message.pk), {"body": "anon"}, "json")

    assert [r.status_code for r in (edited, deleted, anonymous)] == [403, 403, 403]
    assert {r.json()["code"] for r in (edited, deleted, anonymous)} == {"not_message_author"}
    assert Message.objects.get(pk=message.pk).body == "mine"
    assert not MessageChange.objects.exists()


def test_a_room_admin_deletes_anyones_message_but_edits_none(alice, bob):
    room = room_create(slug="club", created_by=bob)
    message = say(room, alice, "spam")

    edited = client_of(bob).patch(url("club", message.pk), {"body": "ham"}, "json")
    deleted = client_of(bob).delete(url("club", message.pk))

    assert (edited.status_code, deleted.status_code) == (403, 204)
    assert Message.objects.get(pk=message.pk).deleted


@pytest.mark.parametrize("who", ["stranger", "anonymous"])
def test_a_message_of_a_private_room_answers_a_stranger_as_an_unknown_message(alice, bob, who):
    # given: alice's private room with a message; bob is no member
    private = room_create(slug="secret", kind="private", created_by=alice)
    message = say(private, alice, "the plan")
    client = client_of(bob if who == "stranger" else None)
    unknown_id = message.pk + 1000

    def answers(message_id: int) -> list[tuple[int, bytes]]:
        calls = [
            client.patch(url("secret", message_id), {"body": "mine now"}, "json"),
            client.delete(url("secret", message_id)),
        ]
        return [(response.status_code, response.content) for response in calls]

    # when: the real message, then an id no message has, then once no room has that slug
    guessed = [
        (status, content.replace(str(message.pk).encode(), b"ID"))
        for status, content in answers(message.pk)
    ]
    unknown = [
        (status, content.replace(str(unknown_id).encode(), b"ID"))
        for status, content in answers(unknown_id)
    ]
    Room.objects.filter(pk=private.pk).delete()
    gone = [
        (status, content.replace(str(message.pk).encode(), b"ID"))
        for status, content in answers(message.pk)
    ]

    # then
    assert guessed == unknown == gone
    assert guessed[0] == (
        404,
        b'{"code":"message_not_found","detail":"No message ID in room \'secret\'."}',
    )


def test_a_member_of_a_private_room_edits_there(alice, bob):
    private = room_create(slug="secret", kind="private", created_by=alice)
    member_add(slug="secret", actor=alice, username="bob")
    message = say(private, bob, "bob's plan")

    response = client_of(bob).patch(url("secret", message.pk), {"body": "better"}, "json")

    assert response.status_code == 200


def test_a_message_of_another_room_is_not_found_by_this_one(alice):
    here, there = RoomFactory.create(slug="here"), RoomFactory.create(slug="there")
    message = say(there, alice, "over there")
    assert here.pk

    response = client_of(alice).patch(url("here", message.pk), {"body": "moved"}, "json")

    assert response.status_code == 404
    assert response.json()["code"] == "message_not_found"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"body": "x" * (MESSAGE_MAX_LENGTH + 1)}, 400, "invalid_message"),
        ({"body": "x" * 1_000_000}, 413, "request_too_large"),
        ({"body": ""}, 400, "invalid_message"),
        ({"body": "nul\x00"}, 400, "invalid_message"),
        ({"body": 42}, 400, "invalid"),
        ({"body": ["list"]}, 400, "invalid"),
        ({"body": None}, 400, "invalid"),
        ({"body": "ok", "client_id": 7}, 400, "invalid"),
        ({"body": "ok", "client_id": "c" * 65}, 400, "invalid_message"),
    ],
)
def test_a_bad_edit_is_refused_and_changes_nothing(room, alice, payload, status, code):
    message = say(room, alice, "fine")

    response = client_of(alice).patch(url("lobby", message.pk), payload, "json")

    assert response.status_code == status
    assert response.json()["code"] == code
    assert Message.objects.get(pk=message.pk).body == "fine"
    assert Room.objects.get(pk=room.pk).last_seq == 1


def test_a_path_that_is_no_message_id_is_no_endpoint(room, alice):
    say(room, alice, "fine")

    response = client_of(alice).patch("/api/rooms/lobby/messages/abc/", {"body": "x"}, "json")

    assert response.status_code == 404


def test_an_id_beyond_any_database_integer_is_no_message(room, alice):
    huge = "629510935229298655457443840"

    patched = client_of(alice).patch(f"/api/rooms/lobby/messages/{huge}/", {"body": "x"}, "json")
    deleted = client_of(alice).delete(f"/api/rooms/lobby/messages/{huge}/")

    assert (patched.status_code, deleted.status_code) == (404, 404)
    assert patched.json()["code"] == deleted.json()["code"] == "message_not_found"


def test_a_patch_without_a_body_answers_the_message_as_it_is(alice, bob):
    room = room_create(slug="club", kind="private", created_by=alice)
    message = say(room, alice, "as it is")

    seen = client_of(alice).patch(url("club", message.pk), {}, "json")
    hidden = client_of(bob).patch(url("club", message.pk), {}, "json")

    assert (seen.status_code, seen.json()["body"], seen.json()["edited_at"]) == (
        200,
        "as it is",
        None,
    )
    assert (hidden.status_code, hidden.json()["code"]) == (404, "message_not_found")
    assert Room.objects.get(pk=room.pk).last_seq == 1


def test_edits_are_rate_limited_with_posts(room, alice, settings):
    settings.CHAT_POST_RATE = "2/hour"
    message = say(room, alice, "one")
    api = client_of(alice)
    api.patch(url("lobby", message.pk), {"body": "two"}, "json")

    response = api.patch(url("lobby", message.pk), {"body": "three"}, "json")
    posted = api.post("/api/rooms/lobby/messages/", {"body": "four"}, "json")

    assert (response.status_code, response.json()["code"]) == (429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert posted.status_code == 429
