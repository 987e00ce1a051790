"""Read state and `rooms:mine` on live Daphne processes, the real Redis channel layer and a real
Celery worker: `chat.read` and its ack, `read` on the member's other sockets, the room list's
snapshot and its live `room.state` and `room.removed`; a stranger hears nothing of a private
room. Every frame received is validated against the frame schemas and the AsyncAPI document.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat.models import Membership
from realtime.sockets.rooms_mine import RoomsMine
from tests.realtime.test_members import (
    about_the_room,
    add,
    make_user,
    post_as,
    private_room,
    remove,
    signed_in,
)
from tests.support.ws import WsClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_gates")]


@database_sync_to_async
def read_up_to(username: str, seq: int) -> None:
    Membership.objects.filter(room__slug="secret", user__username=username).update(
        last_read_seq=seq
    )


@database_sync_to_async
def stored(username: str) -> int:
    return Membership.objects.get(room__slug="secret", user__username=username).last_read_seq


async def test_chat_read_is_acked_clamped_and_told_to_the_members_other_sockets(live_server_url):
    # given: mia, a member who has read nothing of the room's two messages, on two sockets
    owner_id, _ = await make_user("olive")
    _, mia_token = await make_user("mia")
    await private_room(owner_id, "mia")
    await read_up_to("mia", 0)
    tab, other_tab = [await signed_in(live_server_url, mia_token) for _ in range(2)]

    # when: she reads far ahead of the room's last seq
    ack = await tab.request(type="chat.read", room="secret", seq=2**62)

    # then: taken as the last; her other socket is told, the one that read is not
    assert ack == {
        "type": "chat.read_ack",
        "room": "secret",
        "last_read_seq": 2,
        "unread": 0,
        "ref": ack["ref"],
    }
    told = await other_tab.expect("read")
    assert told == {"type": "read", "room": "secret", "last_read_seq": 2, "unread": 0}
    assert [f for f in await tab.drain(0.3) if f["type"] == "read"] == []
    assert await stored("mia") == 2
    for client in (tab, other_tab):
        await client.close()


async def test_chat_read_refuses_strangers_as_unknown_rooms_and_bad_frames(live_server_url):
    # given
    owner_id, _ = await make_user("olive")
    _, sam_token = await make_user("sam")
    await private_room(owner_id)
    stranger = await signed_in(live_server_url, sam_token)
    anonymous = await WsClient.open(live_server_url)

    # when
    guessed = await stranger.request(type="chat.read", room="secret", seq=1)
    unknown = await stranger.request(type="chat.read", room="nowhere", seq=1)
    nobody = await anonymous.request(type="chat.read", room="secret", seq=1)
    bad = [
        await stranger.request(type="chat.read", room="secret", seq=seq)
        for seq in (-1, "1", 1.5, True, None)
    ]
    not_a_room = await stranger.request(type="chat.read", room="jobs:mine", seq=1)

    # then
    assert guessed["code"] == "not_found"
    assert guessed["detail"] == "No room 'secret'."
    assert unknown["detail"] == "No room 'nowhere'."
    assert nobody["code"] == "not_a_member"
    assert {frame["code"] for frame in bad} == {"invalid_frame"}
    assert not_a_room["code"] == "invalid_frame"
    assert await stored("olive") == 0
    for client in (stranger, anonymous):
        await client.close()


async def test_rooms_mine_snapshots_then_follows_posts_reads_and_removal(
    live_server_url, second_server_url, worker
):
    # given: mia is a member of olive's private room; sam is not; each follows rooms:mine
    owner_id, _ = await make_user("olive")
    mia_id, mia_token = await make_user("mia")
    _, sam_token = await make_user("sam")
    await private_room(owner_id, "mia")
    await read_up_to("mia", 0)
    mia = await signed_in(second_server_url, mia_token)  # another process than the posts'
    sam = await signed_in(live_server_url, sam_token)
    subscribed = await mia.request(type="subscribe", channel="rooms:mine")
    snapshot = await mia.expect("rooms.snapshot")
    await sam.request(type="subscribe", channel="rooms:mine")
    sams_snapshot = await sam.expect("rooms.snapshot")

    # when: olive posts
    await post_as(owner_id, "news")
    posted = await mia.expect(
        lambda f: f["type"] == "room.state" and f["room"]["last_seq"] == 3, timeout=20
    )
    # and mia reads it from another tab, then is removed
    other_tab = await signed_in(live_server_url, mia_token)
    await other_tab.request(type="chat.read", room="secret", seq=3)
    read = await mia.expect(
        lambda f: f["type"] == "room.state" and f["room"]["unread"] == 0, timeout=20
    )
    await remove(owner_id, mia_id)
    removed = await mia.expect("room.removed")

    # then
    assert subscribed["type"] == "subscribed"
    assert snapshot["truncated"] is False
    assert [(r["slug"], r["role"], r["last_seq"], r["unread"]) for r in snapshot["rooms"]] == [
        ("secret", "member", 2, 2)
    ]
    assert sams_snapshot["rooms"] == []
    assert (posted["room"]["unread"], posted["room"]["title"]) == (3, "Secret plans")
    assert read["room"]["last_read_seq"] == 3
    assert removed == {
        "type": "room.removed",
        "channel": "rooms:mine",
        "room": "secret",
        "reason": "removed",
    }
    assert about_the_room(await sam.drain(1.5)) == []
    assert [f for f in sam.frames if f["type"] in ("room.state", "room.removed")] == []
    for client in (mia, sam, other_tab):
        await client.close()


async def test_a_member_added_hears_of_the_room_and_a_stranger_may_not_follow_anyones_rooms(
    live_server_url, worker
):
    owner_id, _ = await make_user("olive")
    _, mia_token = await make_user("mia")
    await private_room(owner_id)
    mia = await signed_in(live_server_url, mia_token)
    anonymous = await WsClient.open(live_server_url)
    await mia.request(type="subscribe", channel="rooms:mine")
    await mia.expect("rooms.snapshot")

    await add(owner_id, "mia")
    added = await mia.expect("room.state", timeout=20)
    again = await mia.request(type="subscribe", channel="rooms:mine")
    refused = await anonymous.request(type="subscribe", channel="rooms:mine")
    left = await mia.request(type="unsubscribe", channel="rooms:mine")

    assert (added["room"]["slug"], added["room"]["role"], added["room"]["unread"]) == (
        "secret",
        "member",
        0,
    )
    assert again["code"] == "already_subscribed"
    assert refused["code"] == "not_found"
    assert left["type"] == "unsubscribed"
    for client in (mia, anonymous):
        await client.close()


# ---------------------------------------------------------------- pacing, in memory


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_rooms_mine_sends_a_rooms_state_at_most_once_a_window_the_latest_winning():
    # given
    sent: list[str] = []
    clock = Clock()
    mine = RoomsMine(sent.append, window=0.2, clock=clock)
    mine.state("early", "before the snapshot")
    mine.go_live()

    # when: five states of one room within its window, one of another room
    for n in range(5):
        mine.state("a", f"a{n}")
    mine.state("b", "b0")
    await asyncio.sleep(0.3)
    clock.now += 0.3

    # then: the first at once, the latest when its window ends; the other room's at once
    assert sent == ["before the snapshot", "a0", "b0", "a4"]


async def test_a_removal_is_sent_at_once_and_drops_the_state_waiting():
    sent: list[Any] = []
    clock = Clock()
    mine = RoomsMine(sent.append, window=0.2, clock=clock)
    mine.go_live()

    mine.state("a", "a0")
    mine.state("a", "a1")
    mine.removed("a", "gone")
    await asyncio.sleep(0.3)

    assert sent == ["a0", "gone"]
    mine.close()
