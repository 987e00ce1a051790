"""Edits and deletions on `/ws/`, on live Daphne processes with the real Redis channel layer.

`chat.edit` and `chat.delete` are answered with `chat.edited` / `chat.deleted`; every subscriber
of the room (on any server process) gets `message.edited` / `message.deleted`, each with its
own `seq`; replay by `since` carries them in `seq` order. Every frame received is validated
against the frame schemas and the committed AsyncAPI document (`WsClient`).
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from chat.models import Message, MessageChange, Room
from chat.services import message_post, room_create
from tests.factories import RoomFactory, UserFactory, poster
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_user(username: str) -> tuple[User, str]:
    """A user and a token of theirs."""
    user = UserFactory.create(username=username)
    return user, str(Token.objects.create(user=user).key)


@database_sync_to_async
def say(room: Room, user: User | None, body: str) -> Message:
    return message_post(room=room, poster=poster(user), body=body).message


@database_sync_to_async
def stored(message: Message) -> tuple[str, bool, int]:
    found = Message.objects.get(pk=message.pk)
    return found.body, found.deleted, Room.objects.get(pk=found.room_id).last_seq


async def signed_in(base_url: str, token: str) -> WsClient:
    return await WsClient.open(base_url, additional_headers={"Authorization": f"Token {token}"})


async def subscribed(client: WsClient, room: Room, since: int | None = None) -> WsClient:
    extra = {} if since is None else {"since": since}
    reply = await client.request(type="subscribe", channel=f"room:{room.slug}", **extra)
    assert reply["type"] == "subscribed", reply
    return client


def sequence(client: WsClient) -> list[tuple[int, str]]:
    """The frames of the room's sequence this socket got: (seq, type) each."""
    kinds = ("chat.message", "message.edited", "message.deleted")
    return [(frame["seq"], frame["type"]) for frame in client.frames if frame["type"] in kinds]


async def test_an_edit_and_a_deletion_reach_every_subscriber_and_the_author_gets_acks(
    live_server_url, second_server_url
):
    # given: alice and bob in a room, bob on the other server process, and a message of alice's
    room = await database_sync_to_async(RoomFactory.create)()
    _, alice_token = await make_user("alice")
    _, bob_token = await make_user("bob")
    alice = await subscribed(await signed_in(live_server_url, alice_token), room)
    bob = await subscribed(await signed_in(second_server_url, bob_token), room)
    sent = await alice.request(type="chat.send", room=room.slug, body="helo")
    message_id = sent["id"]
    await bob.expect("chat.message")

    # when
    edited = await alice.request(
        type="chat.edit", room=room.slug, id=message_id, body="hello", client_id="e-1"
    )
    deleted = await alice.request(type="chat.delete", room=room.slug, id=message_id)

    # then: the acks
    assert edited | {"ref": None} == {
        "type": "chat.edited",
        "room": room.slug,
        "seq": 2,
        "id": message_id,
        "message_seq": 1,
        "client_id": "e-1",
        "duplicate": False,
        "ref": None,
    }
    assert deleted | {"ref": None} == {
        "type": "chat.deleted",
        "room": room.slug,
        "seq": 3,
        "id": message_id,
        "message_seq": 1,
        "duplicate": False,
        "ref": None,
    }
    # and the frames, to the author's socket too
    for client in (alice, bob):
        edit = await client.expect("message.edited")
        assert edit | {"edited_at": None} == {
            "type": "message.edited",
            "channel": f"room:{room.slug}",
            "room": room.slug,
            "seq": 2,
            "id": message_id,
            "message_seq": 1,
            "body": "hello",
            "edited_at": None,
        }
        assert await client.expect("message.deleted") == {
            "type": "message.deleted",
            "channel": f"room:{room.slug}",
            "room": room.slug,
            "seq": 3,
            "id": message_id,
            "message_seq": 1,
        }
        assert sequence(client) == [
            (1, "chat.message"),
            (2, "message.edited"),
            (3, "message.deleted"),
        ]
    assert await stored(Message(pk=message_id)) == ("", True, 3)


async def test_a_retried_edit_applies_once_and_gets_the_same_ack(live_server_url):
    room = await database_sync_to_async(RoomFactory.create)()
    user, token = await make_user("alice")
    message = await say(room, user, "v1")
    alice = await subscribed(await signed_in(live_server_url, token), room)
    edit = {"type": "chat.edit", "room": room.slug, "id": message.pk, "body": "v2"}

    first = await alice.request(**edit, client_id="e-1")
    again = await alice.request(**edit, client_id="e-1")
    twice = await alice.request(type="chat.delete", room=room.slug, id=message.pk)
    thrice = await alice.request(type="chat.delete", room=room.slug, id=message.pk)

    assert (first["seq"], first["duplicate"]) == (2, False)
    assert (again["seq"], again["duplicate"]) == (2, True)
    assert (twice["seq"], twice["duplicate"]) == (3, False)
    assert (thrice["seq"], thrice["duplicate"]) == (3, True)
    await alice.request(type="ping")
    assert sequence(alice) == [(2, "message.edited"), (3, "message.deleted")]
    assert await database_sync_to_async(MessageChange.objects.count)() == 2


async def test_replay_since_carries_the_changes_in_seq_order(live_server_url):
    # given: a history with edits and a deletion
    room = await database_sync_to_async(RoomFactory.create)()
    _, token = await make_user("alice")
    alice = await signed_in(live_server_url, token)
    await subscribed(alice, room)
    first = (await alice.request(type="chat.send", room=room.slug, body="one"))["id"]
    second = (await alice.request(type="chat.send", room=room.slug, body="two"))["id"]
    await alice.request(type="chat.edit", room=room.slug, id=first, body="one!")
    await alice.request(type="chat.delete", room=room.slug, id=second)
    await alice.request(type="chat.send", room=room.slug, body="three")

    # when: a client that had seq 1 comes back
    later = await subscribed(await WsClient.open(live_server_url), room, since=1)
    await later.request(type="ping")

    # then: each seq after 1 once, in order; messages as they are now
    assert later.frames[1]["seq"] == 5  # `subscribed`: the room's last seq
    assert sequence(later) == [
        (2, "chat.message"),
        (3, "message.edited"),
        (4, "message.deleted"),
        (5, "chat.message"),
    ]
    replayed = {frame["seq"]: frame for frame in later.frames if "seq" in frame}
    assert (replayed[2]["body"], replayed[2]["deleted"]) == ("", True)
    assert replayed[3]["body"] == "one!"
    # and it goes on live after them
    await alice.request(type="chat.edit", room=room.slug, id=first, body="one!!")
    assert (await later.expect(lambda f: f.get("seq") == 6))["type"] == "message.edited"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "chat.edit", "id": 1, "body": "x"}, "invalid_frame"),  # no room
        ({"type": "chat.edit", "room": "r", "id": "1", "body": "x"}, "invalid_frame"),
        ({"type": "chat.edit", "room": "r", "id": 0, "body": "x"}, "invalid_frame"),
        ({"type": "chat.edit", "room": "r", "id": 1, "body": 5}, "invalid_frame"),
        ({"type": "chat.edit", "room": "r", "id": 1}, "invalid_frame"),
        ({"type": "chat.delete", "room": "r", "id": True}, "invalid_frame"),
        ({"type": "chat.delete", "room": "r", "id": 1, "extra": 1}, "invalid_frame"),
    ],
)
async def test_a_malformed_change_is_an_invalid_frame(live_server_url, frame, code):
    client = await WsClient.open(live_server_url)

    reply = await client.request(**frame)

    assert (reply["type"], reply["code"]) == ("error", code)


async def test_refusals_carry_the_domains_codes(live_server_url):
    # given: alice's message in a public room, and one in her private room
    alice, alice_token = await make_user("alice")
    _, bob_token = await make_user("bob")
    room = await database_sync_to_async(RoomFactory.create)()
    private = await database_sync_to_async(room_create)(
        slug="secret-edits", kind="private", created_by=alice
    )
    message = await say(room, alice, "mine")
    hidden = await say(private, alice, "hidden")
    bob = await signed_in(live_server_url, bob_token)
    alice_ws = await signed_in(live_server_url, alice_token)

    async def code(client: WsClient, **frame: Any) -> str:
        reply = await client.request(**frame)
        assert reply["type"] == "error", reply
        return str(reply["code"])

    # then
    edit = {"type": "chat.edit", "room": room.slug, "id": message.pk, "body": "bob's"}
    assert await code(bob, **edit) == "not_message_author"
    assert await code(bob, type="chat.delete", room=room.slug, id=message.pk) == (
        "not_message_author"
    )
    unknown = await bob.request(type="chat.edit", room="secret-edits", id=hidden.pk + 99, body="x")
    guessed = await bob.request(type="chat.edit", room="secret-edits", id=hidden.pk, body="x")
    assert (guessed["code"], unknown["code"]) == ("message_not_found", "message_not_found")
    assert guessed["detail"].replace(str(hidden.pk), "ID") == unknown["detail"].replace(
        str(hidden.pk + 99), "ID"
    )
    too_long = {**edit, "body": "x" * 4001}
    assert await code(alice_ws, **too_long) == "invalid_message"
    await alice_ws.request(type="chat.delete", room=room.slug, id=message.pk)
    assert await code(alice_ws, **{**edit, "body": "back"}) == "message_deleted"
    assert await stored(message) == ("", True, 2)


async def test_the_tutorial_route_shows_no_change_and_still_gets_later_messages(live_server_url):
    room = await database_sync_to_async(RoomFactory.create)()
    _, token = await make_user("alice")
    tutorial = await WsClient.open(live_server_url, f"/ws/chat/{room.slug}/")
    alice = await subscribed(await signed_in(live_server_url, token), room)
    message_id = (await alice.request(type="chat.send", room=room.slug, body="one"))["id"]

    await alice.request(type="chat.edit", room=room.slug, id=message_id, body="one!")
    await alice.request(type="chat.delete", room=room.slug, id=message_id)
    await alice.request(type="chat.send", room=room.slug, body="two")

    assert await tutorial.expect(lambda f: f.get("message") == "two")
    assert [frame["message"] for frame in tutorial.frames] == ["one", "two"]
