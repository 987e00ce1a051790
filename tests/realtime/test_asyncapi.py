"""Frames from a live server validate against the committed AsyncAPI file, and every server
message it declares is seen on a real socket."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from chat.services import member_add, member_remove, room_create
from jobs.services import job_enqueue
from realtime.kernel.codes import CloseCode, error_codes
from tests.factories import RoomFactory, UserFactory
from tests.support.asyncapi import document, server_messages
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def make_user_and_room() -> tuple[Any, str]:
    user = UserFactory.create(username="speaker", is_staff=True)  # staff may follow logs
    room_create(slug="contract", created_by=user)  # a room of theirs: rooms:mine tells of it
    other = UserFactory.create(username="host")
    room_create(slug="passing", created_by=other)
    member_add(slug="passing", actor=other, username="speaker")
    return user, str(Token.objects.create(user=user).key)


def leave_passing(user: Any) -> None:
    member_remove(slug="passing", actor=user, user_id=user.pk)


def make_typist() -> str:
    user = UserFactory.create(username="typist")
    return str(Token.objects.create(user=user).key)


async def test_every_server_message_is_seen_live_and_validates(live_server_url, worker, tail_file):
    # given
    user, token = await database_sync_to_async(make_user_and_room)()
    job, _ = await database_sync_to_async(job_enqueue)(
        owner=user, kind="demo.sleep", params={"steps": 2, "max_seconds": 0.05}, countdown=2
    )
    streaming, _ = await database_sync_to_async(job_enqueue)(
        owner=user, kind="demo.stream", params={"text": "a b", "words_per_second": 100}, countdown=2
    )
    client = await WsClient.open(live_server_url)  # every frame is validated as it arrives

    # when: one of each request, good and bad
    await client.request(type="auth", token=token)
    await client.request(type="subscribe", channel=f"job:{job.pk}")  # before it runs
    await client.request(type="subscribe", channel=f"job:{streaming.pk}", since=0)
    await client.request(type="ping")
    await client.request(type="subscribe", channel="rooms:mine")
    await client.expect("rooms.snapshot")
    await client.request(type="subscribe", channel="room:contract")
    await client.expect("presence")
    typist = await WsClient.open(
        live_server_url,
        additional_headers={
            "Authorization": f"Token {await database_sync_to_async(make_typist)()}"
        },
    )
    await typist.request(type="subscribe", channel="room:contract")
    await typist.send(type="chat.typing", room="contract")
    await client.expect("typing")
    await client.request(type="chat.typing", room="nowhere")  # not subscribed: error
    sent = await client.request(type="chat.send", room="contract", body="hi", client_id="c-1")
    await client.expect("chat.message")
    await client.request(type="chat.edit", room="contract", id=sent["id"], body="hi!")
    await client.expect("message.edited")
    await client.request(type="chat.delete", room="contract", id=sent["id"])
    await client.expect("message.deleted")
    await client.expect("room.state", timeout=20)  # the room's activity, from the worker
    await client.request(type="chat.read", room="contract", seq=1)
    other_tab = await WsClient.open(
        live_server_url, additional_headers={"Authorization": f"Token {token}"}
    )
    await typist.request(type="chat.send", room="contract", body="and you?")
    await other_tab.request(type="chat.read", room="contract", seq=2)
    await client.expect("read")  # read on another tab
    await database_sync_to_async(leave_passing)(user)
    await client.expect("room.removed")
    await client.request(type="subscribe", channel="room:contract", since=0)  # already: error
    await client.request(type="unsubscribe", channel="room:contract")
    await client.request(type="subscribe", channel="room:contract", since=99)  # ahead: resync
    await client.request(type="subscribe", channel=tail_file.channel)
    tail_file.append(b"a line\n")
    await client.expect("log.lines")
    await client.expect(
        lambda f: f["type"] == "job.update" and f["job"]["status"] == "succeeded", timeout=20
    )
    await client.expect("job.log")
    await client.expect("job.output", timeout=20)
    await client.send_raw("{not json")
    await client.expect("error")

    # then
    seen = {frame["type"] for frame in client.frames}
    assert seen == server_messages("gateway"), seen ^ server_messages("gateway")
    await client.close()
    await typist.close()
    await other_tab.close()


async def test_tutorial_frames_and_close_code_are_the_documented_ones(live_server_url):
    # given
    await database_sync_to_async(RoomFactory.create)(slug="tutorialcontract")
    tab = await WsClient.open(live_server_url, "/ws/chat/tutorialcontract/")

    # when
    await tab.send(message="hello")
    echoed = await tab.expect(lambda f: f.get("message") == "hello")
    await tab.send(message="")
    refused = await tab.expect(lambda f: "error" in f)
    bad_room = await WsClient.open(live_server_url, "/ws/chat/no%20such%20room/")
    code = await bad_room.closed()

    # then: both frames validated on arrival; the close code is a documented one
    assert echoed == {"message": "hello"}
    assert refused["error"] == "invalid_message"
    documented = {c["code"] for c in document()["channels"]["tutorial"]["x-close-codes"]}
    assert code == CloseCode.INVALID_ROOM
    assert code in documented
    await tab.close()


def test_the_document_declares_every_error_code_and_close_code():
    schemas = document()["components"]["schemas"]
    close_codes = document()["channels"]["gateway"]["x-close-codes"]

    assert schemas["ErrorCode"]["enum"] == error_codes()
    assert {c["code"] for c in close_codes} == {
        value for name, value in vars(CloseCode).items() if name.isupper()
    }
    assert all(c["description"] for c in close_codes)
