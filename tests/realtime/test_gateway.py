"""`/ws/` on live Daphne processes with a real Redis channel layer: rooms, replay, presence."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from chat.models import Message
from chat.services import message_post
from tests.factories import RoomFactory, UserFactory, poster
from tests.support.processes import http_json
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def room(db):
    return RoomFactory.create()


def _has_seq(seq: int, frame: dict[str, Any]) -> bool:
    return bool(frame.get("seq") == seq)


def post(room, body: str, author=None):
    return message_post(room=room, poster=poster(author), body=body).message


async def test_subscribe_to_an_unknown_room_is_not_found(live_server_url):
    client = await WsClient.open(live_server_url)

    reply = await client.request(type="subscribe", channel="room:nope")

    assert reply["type"] == "error"
    assert reply["code"] == "not_found"
    await client.close()


async def test_a_message_reaches_every_subscriber_once_and_the_sender_gets_its_seq(
    live_server_url, room
):
    # given
    alice, bob = await WsClient.open(live_server_url), await WsClient.open(live_server_url)
    for client in (alice, bob):
        assert (await client.request(type="subscribe", channel=f"room:{room.slug}"))[
            "type"
        ] == "subscribed"

    # when
    sent = await alice.request(type="chat.send", room=room.slug, body="hello <b>there</b>")

    # then
    assert sent["type"] == "chat.sent"
    assert sent["seq"] == 1
    for client in (alice, bob):
        message = await client.expect("chat.message")
        assert message["seq"] == 1
        assert message["body"] == "hello <b>there</b>"  # stored and sent exactly as written
        assert message["author"] is None
    assert [m["seq"] for m in (await bob.drain(0.3)) if m["type"] == "chat.message"] == []
    await alice.close()
    await bob.close()


async def test_subscribe_since_replays_then_goes_live_in_order(live_server_url, room):
    # given: five messages already posted
    for n in range(1, 6):
        await sync_to_async(post)(room, f"m{n}")
    client = await WsClient.open(live_server_url)

    # when
    subscribed = await client.request(type="subscribe", channel=f"room:{room.slug}", since=2)
    replayed = [await client.expect("chat.message") for _ in range(3)]
    await sync_to_async(post)(room, "m6")
    live = await client.expect("chat.message")

    # then
    assert subscribed == {
        "type": "subscribed",
        "channel": f"room:{room.slug}",
        "seq": 5,
        "ref": subscribed["ref"],
    }
    assert [m["body"] for m in replayed] == ["m3", "m4", "m5"]
    assert live["seq"] == 6
    await client.close()


async def test_since_ahead_of_the_room_requires_a_resync(live_server_url, room):
    await sync_to_async(post)(room, "only one")
    client = await WsClient.open(live_server_url)

    reply = await client.request(type="subscribe", channel=f"room:{room.slug}", since=99)

    assert reply["type"] == "resync_required"
    assert reply["seq"] == 1
    await sync_to_async(post)(room, "after resync")
    assert (await client.expect("chat.message"))["seq"] == 2  # live continues after it
    await client.close()


async def test_replay_racing_live_posts_loses_nothing_and_repeats_nothing(live_server_url, room):
    """Subscribe again and again while another process (this one) posts without pause."""
    stop = asyncio.Event()

    async def post_continuously() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await sync_to_async(post)(room, f"p{n}")
            await asyncio.sleep(0.005)  # stay within the replay limit over the whole test

    posting = asyncio.create_task(post_continuously())
    try:
        live_seen = 0
        for _attempt in range(8):
            await asyncio.sleep(0.05)
            client = await WsClient.open(live_server_url)
            subscribed = await client.request(
                type="subscribe", channel=f"room:{room.slug}", since=0
            )
            assert subscribed["type"] == "subscribed"
            last: int = subscribed["seq"]  # the replay ends here; live messages follow
            if last:
                await client.expect(partial(_has_seq, last))
            await client.drain(0.2)
            await client.close()
            seqs = [m["seq"] for m in client.messages()]
            # then: 1..whatever arrived, contiguous and once each, the replay included
            assert seqs == list(range(1, len(seqs) + 1)), seqs
            assert len(seqs) >= subscribed["seq"]
            live_seen += len(seqs) - subscribed["seq"]
        assert live_seen > 0  # the live side of the race was exercised too
    finally:
        stop.set()
        await posting
    assert await database_sync_to_async(Message.objects.filter(room=room).count)() > 8


async def test_client_id_retry_posts_once(live_server_url, room):
    client = await WsClient.open(live_server_url)
    await client.request(type="subscribe", channel=f"room:{room.slug}")
    client_id = str(uuid.uuid4())

    first = await client.request(type="chat.send", room=room.slug, body="once", client_id=client_id)
    retry = await client.request(type="chat.send", room=room.slug, body="once", client_id=client_id)

    assert (first["seq"], first["duplicate"]) == (1, False)
    assert (retry["seq"], retry["duplicate"]) == (1, True)
    await client.expect("chat.message")
    assert [f for f in await client.drain(0.3) if f["type"] == "chat.message"] == []
    count = await database_sync_to_async(Message.objects.filter(room=room).count)()
    assert count == 1
    await client.close()


async def test_presence_and_messages_cross_server_processes(
    live_server_url, second_server_url, room
):
    # given: one user with two tabs on server 1, an anonymous socket on server 2
    user = await database_sync_to_async(UserFactory.create)(username="alice")
    token = await database_sync_to_async(_token_for)(user)
    auth: dict[str, Any] = {"additional_headers": {"Authorization": f"Token {token}"}}
    tab1 = await WsClient.open(live_server_url, **auth)
    tab2 = await WsClient.open(live_server_url, **auth)
    anonymous = await WsClient.open(second_server_url)
    channel = f"room:{room.slug}"

    # when
    for client in (tab1, tab2, anonymous):
        await client.request(type="subscribe", channel=channel)

    # then: the anonymous socket on the other process sees alice once, and itself counted
    seen = await anonymous.expect(
        lambda f: f["type"] == "presence" and f["count"] == 2 and f["anonymous"] == 1
    )
    assert seen["users"] == [{"id": user.pk, "username": "alice"}]

    # and a message sent through server 1 reaches the socket on server 2
    await tab1.request(type="chat.send", room=room.slug, body="across")
    assert (await anonymous.expect("chat.message"))["author"] == {
        "id": user.pk,
        "username": "alice",
    }

    # and closing both tabs takes alice out of the room for the others
    await tab1.close()
    await tab2.close()
    left = await anonymous.expect(lambda f: f["type"] == "presence" and f["users"] == [])
    assert left["anonymous"] == 1
    await anonymous.close()


def _token_for(user) -> str:
    from rest_framework.authtoken.models import Token

    return str(Token.objects.create(user=user).key)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('"just a string"', "invalid_frame"),
        ('{"type": "nope"}', "unknown_type"),
        ('{"type": "on_ping"}', "unknown_type"),  # handler names are not reachable
        ('{"type": "__init__"}', "unknown_type"),
        ('{"no_type": 1}', "unknown_type"),
        ('{"type": "subscribe"}', "invalid_frame"),
        ('{"type": "subscribe", "channel": 5}', "invalid_frame"),
        ('{"type": "subscribe", "channel": "room:caf\u00e9"}', "invalid_frame"),
        ('{"type": "subscribe", "channel": "job:1"}', "invalid_frame"),
        ('{"type": "subscribe", "channel": "room:lobby", "since": -1}', "invalid_frame"),
        ('{"type": "subscribe", "channel": "room:lobby", "since": "3"}', "invalid_frame"),
        ('{"type": "chat.send", "room": "x", "body": 5}', "invalid_frame"),
        ('{"type": "chat.send", "room": "x y", "body": "hi"}', "invalid_frame"),
        ('{"type": "chat.send", "room": "nope", "body": "hi"}', "not_found"),
        ('{"type": "unsubscribe", "channel": "room:lobby"}', "not_subscribed"),
        ("[" * 100_000 + "]" * 100_000, "frame_too_large"),
        ("[" * 30_000 + "]" * 30_000, "invalid_json"),  # nesting: fails inside the parser
        ('{"type": "ping", "ref": ' + "9" * 5000 + "}", "invalid_json"),  # huge number
        ('{"type": "ping", "ref": NaN}', "invalid_json"),  # not JSON, though Python reads it
        ('{"type": "ping", "ref": -Infinity}', "invalid_json"),
        ('{"type": "subscribe", "channel": "room:lobby", "since": 1e400}', "invalid_frame"),
        (
            '{"type": "subscribe", "channel": "room:lobby", "since": ' + "9" * 40 + "}",
            "invalid_frame",
        ),  # beyond any seq a database can hold
        ('{"type": "ping", "x": ' + "[" * 500 + "]" * 500 + "}", "invalid_frame"),
    ],
)
async def test_bad_input_gets_an_error_frame_and_the_socket_stays_usable(
    live_server_url, frame, code
):
    client = await WsClient.open(live_server_url)

    await client.send_raw(frame)
    error = await client.expect("error")
    pong = await client.request(type="ping")

    assert error["code"] == code
    assert "Traceback" not in error["detail"]
    assert pong["type"] == "pong"
    await client.close()


async def test_errors_echo_the_ref_of_the_bad_request(live_server_url):
    client = await WsClient.open(live_server_url)

    reply = await client.request(type="subscribe", channel="room:bad slug", ref="abc")

    assert reply == {
        "type": "error",
        "code": "invalid_frame",
        "detail": reply["detail"],
        "ref": "abc",
    }
    await client.close()


async def test_oversized_message_body_is_refused_and_nothing_is_stored(live_server_url, room):
    client = await WsClient.open(live_server_url)

    reply = await client.request(type="chat.send", room=room.slug, body="x" * 4001)

    assert reply["code"] == "invalid_message"
    assert await database_sync_to_async(Message.objects.count)() == 0
    await client.close()


async def test_a_flood_is_rate_limited_then_closed(live_server_url):
    client = await WsClient.open(live_server_url)

    # when: far more frames than the burst allows, as fast as possible
    for _ in range(400):
        try:
            await client.ws.send(json.dumps({"type": "ping"}))
        except Exception:
            break

    # then: some pongs, one rate_limited error, then the close code for flooding
    code = await client.closed()
    assert code == 4429
    assert any(f.get("code") == "rate_limited" for f in client.frames)
    assert 0 < sum(f["type"] == "pong" for f in client.frames) < 400


async def test_posts_racing_through_two_servers_and_rest_get_gapless_seqs(
    live_server_url, second_server_url, room
):
    # given: a subscriber, and three posters: a socket on each server and REST callers
    subscriber = await WsClient.open(live_server_url)
    await subscriber.request(type="subscribe", channel=f"room:{room.slug}")
    one, two = await WsClient.open(live_server_url), await WsClient.open(second_server_url)
    per_poster = 25

    async def socket_posts(client: WsClient, tag: str) -> None:
        for n in range(per_poster):
            reply = await client.request(type="chat.send", room=room.slug, body=f"{tag}{n}")
            assert reply["type"] == "chat.sent", reply

    def rest_post(n: int) -> None:
        status, body, _ = http_json(
            f"{second_server_url}/api/rooms/{room.slug}/messages/",
            method="POST",
            body={"body": f"rest{n}"},
        )
        assert status == 201, body

    async def rest_posts() -> None:
        await asyncio.gather(*(asyncio.to_thread(rest_post, n) for n in range(per_poster)))

    # when
    await asyncio.gather(socket_posts(one, "one"), socket_posts(two, "two"), rest_posts())

    # then: the database holds 1..75 once each
    total = 3 * per_poster
    rows = await database_sync_to_async(
        lambda: list(Message.objects.filter(room=room).values_list("seq", "body"))
    )()
    assert sorted(seq for seq, _ in rows) == list(range(1, total + 1))
    assert len({body for _, body in rows}) == total
    # and the subscriber got every one, in order, once
    received = [await subscriber.expect("chat.message") for _ in range(total)]
    assert [m["seq"] for m in received] == list(range(1, total + 1))
    assert [f for f in await subscriber.drain(0.3) if f["type"] == "chat.message"] == []
    for client in (subscriber, one, two):
        await client.close()


async def test_a_refused_request_with_a_ref_is_told_so(live_server_url):
    client = await WsClient.open(live_server_url)

    # when: more requests than the burst allows, each with its own ref
    for n in range(80):
        await client.send(type="ping", ref=n)
    replies = [await client.expect(_has_ref(n)) for n in range(80)]

    # then: every request got an answer: a pong, or rate_limited carrying its ref
    kinds = {r["type"] if r["type"] == "pong" else r["code"] for r in replies}
    assert kinds == {"pong", "rate_limited"}
    await client.close()


def _has_ref(ref: int) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame.get("ref") == ref
