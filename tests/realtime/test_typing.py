"""Typing on `/ws/`, on a live Daphne process with the real Redis channel layer.

A `typing` frame goes to the room's subscribers only, never to the typist's own sockets, at
most one a CHAT_TYPING_INTERVAL per socket and room, and nothing of it is stored. Every frame
received is validated against the frame schemas and the committed AsyncAPI document.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from chat.models import Message, Room
from tests.factories import RoomFactory, UserFactory
from tests.support.processes import http_json
from tests.support.ws import Frame, WsClient

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_room() -> Room:
    return RoomFactory.create()


@database_sync_to_async
def make_user(username: str) -> tuple[int, str]:
    """A user and a token of theirs: (id, token)."""
    user = UserFactory.create(username=username)
    return user.pk, str(Token.objects.create(user=user).key)


async def signed_in(base_url: str, token: str) -> WsClient:
    return await WsClient.open(base_url, additional_headers={"Authorization": f"Token {token}"})


async def subscribed(client: WsClient, room: Room) -> WsClient:
    reply = await client.request(type="subscribe", channel=f"room:{room.slug}")
    assert reply["type"] == "subscribed", reply
    return client


async def alice_and_bob_in_a_room(base_url: str) -> tuple[Room, WsClient, WsClient]:
    """A new room, and two signed-in users subscribed to it: alice and bob."""
    room = await make_room()
    _, alice_token = await make_user("alice")
    _, bob_token = await make_user("bob")
    alice = await subscribed(await signed_in(base_url, alice_token), room)
    bob = await subscribed(await signed_in(base_url, bob_token), room)
    return room, alice, bob


def typing_frames(client: WsClient) -> list[Frame]:
    return [frame for frame in client.frames if frame["type"] == "typing"]


async def after_everything_sent_to_it(client: WsClient) -> None:
    """Wait until this socket has received every frame its process pushed to it so far.

    A room's frames reach all of a process's sockets in one pass; a `pong` asked for after a
    frame reached one of them comes after whatever that pass gave this one.
    """
    assert (await client.request(type="ping"))["type"] == "pong"


async def test_the_rooms_other_subscribers_see_who_types_and_the_typist_does_not(
    live_server_url,
):
    # given: alice and bob signed in, and an anonymous reader, all in the room
    room, alice, bob = await alice_and_bob_in_a_room(live_server_url)
    reader = await subscribed(await WsClient.open(live_server_url), room)

    # when
    await alice.send(type="chat.typing", room=room.slug)

    # then: the others are told who, for how long
    expected = {
        "type": "typing",
        "channel": f"room:{room.slug}",
        "room": room.slug,
        "user": {"id": alice.frames[0]["user"]["id"], "username": "alice"},  # hello has her id
        "typing": True,
        "expires_in": 6,
    }
    assert await bob.expect("typing") == expected
    assert await reader.expect("typing") == expected

    # and alice is not: her own message, sent after, reaches her with nothing before it
    await alice.request(type="chat.send", room=room.slug, body="done typing")
    await alice.expect("chat.message")
    assert typing_frames(alice) == []
    for client in (alice, bob, reader):
        await client.close()


async def test_the_typists_other_tabs_and_sockets_outside_the_room_see_nothing(live_server_url):
    # given: alice in the room in two tabs; bob in the room; carol in another room only
    room, elsewhere = await make_room(), await make_room()
    _, alice_token = await make_user("alice")
    _, bob_token = await make_user("bob")
    _, carol_token = await make_user("carol")
    tab1 = await subscribed(await signed_in(live_server_url, alice_token), room)
    tab2 = await subscribed(await signed_in(live_server_url, alice_token), room)
    bob = await subscribed(await signed_in(live_server_url, bob_token), room)
    carol = await subscribed(await signed_in(live_server_url, carol_token), elsewhere)
    stranger = await WsClient.open(live_server_url)  # in no room at all

    # when
    await tab1.send(type="chat.typing", room=room.slug)
    await bob.expect("typing")

    # then
    for client in (tab2, carol, stranger):
        await after_everything_sent_to_it(client)
        assert typing_frames(client) == []
    for client in (tab1, tab2, bob, carol, stranger):
        await client.close()


async def test_a_typing_frame_per_keystroke_makes_one_event(live_server_url):
    # given
    room, alice, bob = await alice_and_bob_in_a_room(live_server_url)

    # when: a frame at each of twenty keystrokes, then a stop
    for _ in range(20):
        await alice.send(type="chat.typing", room=room.slug)
    await alice.send(type="chat.typing", room=room.slug, typing=False)

    # then: bob was told once that she types, then that she stopped; alice heard of no error
    await bob.expect(lambda f: f["type"] == "typing" and not f["typing"])
    assert [(f["typing"], f["expires_in"]) for f in typing_frames(bob)] == [(True, 6), (False, 0)]
    await after_everything_sent_to_it(alice)
    assert [f for f in alice.frames if f["type"] == "error"] == []
    await alice.close()
    await bob.close()


async def test_typing_a_flood_counts_against_the_frame_rate(live_server_url):
    room = await make_room()
    _, token = await make_user("alice")
    alice = await subscribed(await signed_in(live_server_url, token), room)

    # when: far more frames at once than a keyboard makes (the burst is 40)
    for _ in range(60):
        await alice.send(type="chat.typing", room=room.slug)

    # then: refused like any other flood of frames
    refused = await alice.expect("error")
    assert refused["code"] == "rate_limited"
    await alice.close()


@pytest.mark.parametrize("where", ["another room", "no room", "a room left"])
async def test_typing_in_a_room_the_socket_is_not_in_is_refused(live_server_url, where):
    # given
    room = await make_room()
    _, token = await make_user("alice")
    alice = await signed_in(live_server_url, token)
    slug = room.slug
    if where == "no room":
        slug = "no-such-room"
    elif where == "a room left":
        await subscribed(alice, room)
        await alice.request(type="unsubscribe", channel=f"room:{room.slug}")

    # when
    reply = await alice.request(type="chat.typing", room=slug)

    # then: what `unsubscribe` answers for a room the socket is not in
    assert reply["type"] == "error"
    assert reply["code"] == "not_subscribed"
    await alice.close()


async def test_anonymous_sockets_may_read_but_not_type(live_server_url):
    # given: an anonymous reader and bob in the room
    room = await make_room()
    _, bob_token = await make_user("bob")
    reader = await subscribed(await WsClient.open(live_server_url), room)
    bob = await subscribed(await signed_in(live_server_url, bob_token), room)

    # when
    reply = await reader.request(type="chat.typing", room=room.slug)

    # then: refused with its own code, and nothing reached bob before the reader's next post
    assert (reply["type"], reply["code"]) == ("error", "typing_not_allowed")
    await reader.request(type="chat.send", room=room.slug, body="anonymous posting is on here")
    await bob.expect("chat.message")
    assert typing_frames(bob) == []
    await reader.close()
    await bob.close()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "chat.typing"},
        {"type": "chat.typing", "room": "a b"},
        {"type": "chat.typing", "room": "lobby", "typing": "yes"},
        {"type": "chat.typing", "room": "lobby", "typing": 1},
        {"type": "chat.typing", "room": "lobby", "user": {"id": 1, "username": "root"}},
    ],
)
async def test_malformed_typing_frames_are_invalid(live_server_url, frame: dict[str, Any]):
    client = await WsClient.open(live_server_url)

    reply = await client.request(**frame)

    assert (reply["type"], reply["code"]) == ("error", "invalid_frame")
    await client.close()


async def test_typing_is_never_stored_nor_replayed(live_server_url):
    # given: alice types in a room where bob listens
    room, alice, bob = await alice_and_bob_in_a_room(live_server_url)
    await alice.send(type="chat.typing", room=room.slug)
    await bob.expect("typing")

    # when: someone comes in with `since=0`, and the history is read over REST
    late = await WsClient.open(live_server_url)
    subscribed_reply = await late.request(type="subscribe", channel=f"room:{room.slug}", since=0)
    status, history, _ = await asyncio.to_thread(
        http_json, f"{live_server_url}/api/rooms/{room.slug}/messages/"
    )

    # then: no row, no seq, nothing replayed
    assert await database_sync_to_async(Message.objects.filter(room=room).count)() == 0
    refreshed = await database_sync_to_async(Room.objects.get)(pk=room.pk)
    assert refreshed.last_seq == 0
    assert subscribed_reply["seq"] == 0
    assert (status, history["results"], history["last_seq"]) == (200, [], 0)
    await after_everything_sent_to_it(late)
    assert [f["type"] for f in late.frames if f["type"] in ("typing", "chat.message")] == []
    for client in (alice, bob, late):
        await client.close()
