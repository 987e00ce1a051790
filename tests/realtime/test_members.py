"""Private rooms on the sockets, on live Daphne processes with the real Redis channel layer.

A stranger is told `not_found` exactly as for an unknown room; a member removed while
subscribed, on any server process, gets `unsubscribed` with the reason and nothing more of the
room; a member just added subscribes at once. Every frame received is validated against the
frame schemas and the committed AsyncAPI document.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from chat.models import Membership, Message, Room
from chat.services import member_add, member_remove, message_post, room_create, room_delete
from realtime.kernel.events import UserRef
from realtime.kernel.names import room_group
from realtime.sockets.feed import CHECK
from realtime.sockets.room_feed import RoomFeed
from realtime.sockets.subscription import GATEWAY, Subscription
from tests.factories import UserFactory, poster
from tests.support.ws import Frame, WsClient

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_user(username: str) -> tuple[int, str]:
    """A user and a token of theirs: (id, token)."""
    user = UserFactory.create(username=username)
    return user.pk, str(Token.objects.create(user=user).key)


@database_sync_to_async
def private_room(owner_id: int, *members: str) -> Room:
    """A private room of the owner's, with these members and two messages."""
    owner = UserFactory._meta.model.objects.get(pk=owner_id)
    room = room_create(slug="secret", title="Secret plans", created_by=owner, kind="private")
    for username in members:
        member_add(slug=room.slug, actor=owner, username=username)
    for body in ("the plan", "the time"):
        message_post(room=room, poster=poster(owner), body=body)
    return room


@database_sync_to_async
def post_as(user_id: int, body: str) -> None:
    user = UserFactory._meta.model.objects.get(pk=user_id)
    message_post(room=Room.objects.get(slug="secret"), poster=poster(user), body=body)


@database_sync_to_async
def remove(owner_id: int, user_id: int) -> None:
    owner = UserFactory._meta.model.objects.get(pk=owner_id)
    member_remove(slug="secret", actor=owner, user_id=user_id)


@database_sync_to_async
def add(owner_id: int, username: str) -> None:
    owner = UserFactory._meta.model.objects.get(pk=owner_id)
    member_add(slug="secret", actor=owner, username=username)


async def signed_in(base_url: str, token: str) -> WsClient:
    return await WsClient.open(base_url, additional_headers={"Authorization": f"Token {token}"})


def about_the_room(frames: list[Frame]) -> list[Frame]:
    """What the frames tell of the private room: its messages, presence, typists, its name."""
    return [
        frame
        for frame in frames
        if frame.get("channel") == "room:secret" or frame.get("room") == "secret"
    ]


async def test_a_stranger_subscribing_or_replaying_is_told_what_an_unknown_room_gets(
    live_server_url,
):
    # given: a private room with messages, and a stranger (signed in) and an anonymous socket
    owner_id, _ = await make_user("olive")
    _, stranger_token = await make_user("sam")
    room = await private_room(owner_id)
    stranger = await signed_in(live_server_url, stranger_token)
    anonymous = await WsClient.open(live_server_url)

    def asks(client: WsClient) -> list[dict[str, Any]]:
        return [
            {"type": "subscribe", "channel": "room:secret", "since": 0, "ref": 1},
            {"type": "subscribe", "channel": "room:secret", "ref": 2},
            {"type": "chat.send", "room": "secret", "body": "let me in", "ref": 3},
            {"type": "chat.typing", "room": "secret", "ref": 4},
            {"type": "unsubscribe", "channel": "room:secret", "ref": 5},
        ]

    async def answers(client: WsClient) -> list[Frame]:
        return [await client.request(**ask) for ask in asks(client)]

    # when: each asks, then again once no room has that slug
    guessed = [await answers(stranger), await answers(anonymous)]
    await database_sync_to_async(Room.objects.filter(pk=room.pk).delete)()
    unknown = [await answers(stranger), await answers(anonymous)]

    # then: the same frames, word for word; nothing else of the room reached them
    assert guessed == unknown
    assert [frame["code"] for frame in guessed[0]] == [
        "not_found",
        "not_found",
        "not_found",
        "not_subscribed",
        "not_subscribed",
    ]
    assert guessed[1][2]["code"] == "not_found"  # anonymous posting is allowed here, yet
    for client in (stranger, anonymous):
        assert about_the_room(await client.drain(0.3)) == []
        await client.close()
    assert not await database_sync_to_async(Message.objects.filter(body="let me in").exists)()


async def test_a_removed_members_sockets_in_every_process_are_told_and_hear_no_more(
    live_server_url, second_server_url
):
    # given: mia, a member, subscribed on two server processes; olive, the owner, on one
    owner_id, owner_token = await make_user("olive")
    mia_id, mia_token = await make_user("mia")
    await private_room(owner_id, "mia")
    olive = await signed_in(live_server_url, owner_token)
    tabs = [await signed_in(url, mia_token) for url in (live_server_url, second_server_url)]
    for client in (olive, *tabs):
        reply = await client.request(type="subscribe", channel="room:secret", since=0)
        assert reply["type"] == "subscribed", reply
        assert [(await client.expect("chat.message"))["seq"] for _ in range(2)] == [1, 2]

    # when: olive removes her, then posts
    await remove(owner_id, mia_id)
    ended = [await tab.expect("unsubscribed") for tab in tabs]
    await post_as(owner_id, "after she left")

    # then: each of her sockets was told why, and hears nothing more of the room
    assert ended == [{"type": "unsubscribed", "channel": "room:secret", "reason": "removed"}] * 2
    assert (await olive.expect("chat.message"))["body"] == "after she left"
    for tab in tabs:
        assert [f for f in about_the_room(await tab.drain(0.5)) if f["type"] != "presence"] == []
        assert tab.messages("secret")[-1]["seq"] == 2
        # ...and may do nothing there: it is an unknown room to her now
        assert (await tab.request(type="chat.typing", room="secret"))["code"] == "not_subscribed"
        assert (await tab.request(type="chat.send", room="secret", body="x"))["code"] == (
            "not_found"
        )
        again = await tab.request(type="subscribe", channel="room:secret", since=0)
        assert again["code"] == "not_found"
        await tab.close()
    # olive's presence no longer lists her
    presence = await olive.expect(
        lambda f: f["type"] == "presence" and [u["username"] for u in f["users"]] == ["olive"]
    )
    assert presence["count"] == 1
    await olive.close()


async def test_leaving_ends_the_subscriptions_with_left(live_server_url):
    owner_id, _ = await make_user("olive")
    mia_id, mia_token = await make_user("mia")
    await private_room(owner_id, "mia")
    mia = await signed_in(live_server_url, mia_token)
    assert (await mia.request(type="subscribe", channel="room:secret"))["type"] == "subscribed"

    await database_sync_to_async(
        lambda: member_remove(
            slug="secret",
            actor=UserFactory._meta.model.objects.get(pk=mia_id),
            user_id=mia_id,
        )
    )()

    assert (await mia.expect("unsubscribed"))["reason"] == "left"
    await mia.close()


async def test_a_deleted_room_ends_every_subscription_and_leaves_each_members_room_list(
    live_server_url, second_server_url
):
    # given: olive's public room, with mia a member following her room list on another
    # process; an anonymous reader and a tutorial page on the room
    owner_id, owner_token = await make_user("olive")
    _, mia_token = await make_user("mia")
    await database_sync_to_async(public_room)(owner_id, "mia")
    olive = await signed_in(live_server_url, owner_token)
    mia = await signed_in(second_server_url, mia_token)
    anonymous = await WsClient.open(live_server_url)
    tutorial = await WsClient.open(live_server_url, "/ws/chat/square/")
    for client in (olive, anonymous):
        assert (await client.request(type="subscribe", channel="room:square"))["type"] == (
            "subscribed"
        )
    assert (await mia.request(type="subscribe", channel="rooms:mine"))["type"] == "subscribed"

    # when: olive deletes it
    await database_sync_to_async(
        lambda: room_delete(slug="square", actor=UserFactory._meta.model.objects.get(pk=owner_id))
    )()

    # then: every subscriber is told, whoever they are; mia's room list loses it; the
    # tutorial page is closed as for a room it does not serve
    for client in (olive, anonymous):
        ended = await client.expect("unsubscribed")
        assert ended == {"type": "unsubscribed", "channel": "room:square", "reason": "deleted"}
    removed = await mia.expect("room.removed")
    assert (removed["room"], removed["reason"]) == ("square", "deleted")
    assert await tutorial.closed() == 4400
    for client in (olive, mia, anonymous):
        await client.close()


def public_room(owner_id: int, *members: str) -> Room:
    owner = UserFactory._meta.model.objects.get(pk=owner_id)
    room = room_create(slug="square", created_by=owner)
    for username in members:
        member_add(slug=room.slug, actor=owner, username=username)
    return room


async def test_a_member_just_added_subscribes_at_once(live_server_url):
    # given: sam was refused a moment ago
    owner_id, owner_token = await make_user("olive")
    _, sam_token = await make_user("sam")
    await private_room(owner_id)
    sam = await signed_in(live_server_url, sam_token)
    olive = await signed_in(live_server_url, owner_token)
    assert (await olive.request(type="subscribe", channel="room:secret"))["type"] == "subscribed"
    refused = await sam.request(type="subscribe", channel="room:secret", since=0)
    assert refused["code"] == "not_found"

    # when: olive adds him
    await add(owner_id, "sam")

    # then: the same socket subscribes now, replays, types and posts
    reply = await sam.request(type="subscribe", channel="room:secret", since=0)
    assert (reply["type"], reply["seq"]) == ("subscribed", 2)
    assert [(await sam.expect("chat.message"))["body"] for _ in range(2)] == [
        "the plan",
        "the time",
    ]
    await sam.send(type="chat.typing", room="secret")
    assert (await olive.expect("typing"))["user"]["username"] == "sam"
    sent = await sam.request(type="chat.send", room="secret", body="thanks")
    assert (sent["type"], sent["seq"]) == ("chat.sent", 3)
    await sam.close()
    await olive.close()


async def test_the_tutorial_route_does_not_serve_a_private_room(live_server_url):
    owner_id, _ = await make_user("olive")
    await private_room(owner_id)

    tab = await WsClient.open(live_server_url, "/ws/chat/secret/")

    assert await tab.closed() == 4400
    assert tab.frames == []
    assert await database_sync_to_async(Room.objects.count)() == 1


async def test_a_feed_catching_up_lets_go_of_whoever_may_no_longer_read_the_room():
    # given: this process's feed of a private room, followed by olive and mia; mia's removal
    # was committed, but its event never arrived (the layer lost it)
    owner_id, _ = await make_user("olive")
    mia_id, _ = await make_user("mia")
    room = await private_room(owner_id, "mia")
    await database_sync_to_async(Membership.objects.filter(user_id=mia_id).delete)()
    feed = RoomFeed(room_group(room.slug), slug=room.slug, room_id=room.pk, last_seq=2)
    ended: list[tuple[str, str]] = []
    for user_id, name in ((owner_id, "olive"), (mia_id, "mia")):
        subscription = Subscription(
            lambda text: None, GATEWAY, name, UserRef(id=user_id, username=name)
        )
        subscription.ended = lambda reason, name=name: ended.append((name, reason))
        feed.subscriptions.add(subscription)

    # when: the hub tells the feed to catch up, as it does once the layer delivers again
    feed.put({"type": CHECK})
    await feed.queue.join()
    feed.stop()

    # then: mia's subscription ended; olive's goes on
    assert ended == [("mia", "removed")]
    assert [s.conn_id for s in feed.subscriptions] == ["olive"]
