"""`/ws/chat/<room>/`: the tutorial's frames, the same messages REST and the gateway see."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.db import database_sync_to_async

from chat.models import Message, Room
from tests.support.processes import daphne
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def no_anonymous_posting_url(shared_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """A server with anonymous posting off, as in production."""
    service, url = daphne(dict(shared_env, SWITCHBOARD_ANONYMOUS_POSTING="0"), log_dir)
    yield url
    service.stop()


async def test_tutorial_frames_both_ways_are_the_rooms_messages(live_server_url):
    # given: a tutorial socket (creating the room) and a gateway subscriber of the same room
    tab = await WsClient.open(live_server_url, "/ws/chat/tutorialroom/")
    gateway = await WsClient.open(live_server_url)
    assert (await gateway.request(type="subscribe", channel="room:tutorialroom"))[
        "type"
    ] == "subscribed"

    # when: one message from each (the second once the first is back: two sockets' frames
    # have no order between them otherwise)
    await tab.send(message="hello from the tutorial")
    echo = await tab.expect(lambda f: True)
    await gateway.request(type="chat.send", room="tutorialroom", body="hello from the gateway")

    # then
    assert echo == {"message": "hello from the tutorial"}
    assert await tab.expect(lambda f: True) == {"message": "hello from the gateway"}
    assert [m["body"] for m in [await gateway.expect("chat.message") for _ in range(2)]] == [
        "hello from the tutorial",
        "hello from the gateway",
    ]
    bodies = await database_sync_to_async(
        lambda: list(Message.objects.order_by("seq").values_list("seq", "body"))
    )()
    assert bodies == [(1, "hello from the tutorial"), (2, "hello from the gateway")]
    await tab.close()
    await gateway.close()


@pytest.mark.parametrize("name", ["caf%C3%A9", "a" * 65, "with.dot", "%F0%9F%98%80"])
async def test_a_room_name_no_room_can_have_is_closed_with_4400(live_server_url, name):
    tab = await WsClient.open(live_server_url, f"/ws/chat/{name}/")

    assert await tab.closed() == 4400
    assert not await database_sync_to_async(Room.objects.exists)()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_json"),
        ('{"msg": "x"}', "invalid_frame"),
        ('{"message": 5}', "invalid_frame"),
        ('{"message": ""}', "invalid_message"),
        (json.dumps({"message": "x" * 4001}), "invalid_message"),
    ],
)
async def test_bad_tutorial_frames_are_explained_in_the_message_field(live_server_url, raw, code):
    tab = await WsClient.open(live_server_url, "/ws/chat/lobby/")

    await tab.send_raw(raw)
    reply = await tab.expect(lambda f: True)

    assert reply["error"] == code
    assert reply["message"].startswith("[not sent: ")  # what the tutorial page shows
    await tab.send(message="still works")
    assert await tab.expect(lambda f: True) == {"message": "still works"}
    await tab.close()


async def test_anonymous_posting_can_be_turned_off(no_anonymous_posting_url):
    tab = await WsClient.open(no_anonymous_posting_url, "/ws/chat/lobby/")

    await tab.send(message="hi")
    reply = await tab.expect(lambda f: True)

    assert reply["error"] == "posting_not_allowed"
    assert not await database_sync_to_async(Message.objects.exists)()
    await tab.close()
