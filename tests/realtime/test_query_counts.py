"""How many SQL queries each socket request makes, counted on every thread, pinned.

The sockets run in process: `config.asgi.application` driven by Channels' communicator on
this test's event loop, with the real Redis channel layer. Their handlers query on the sockets'
database thread (`on_database_thread`), so the queries are counted on every thread's
connection, and the data they read is committed first (transactional tests).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

from chat.models import Message, Room
from chat.services import (
    Post,
    PostResult,
    message_delete,
    message_edit,
    message_post,
    room_create,
)
from config.asgi import application
from jobs.models import Job
from jobs.services import job_enqueue
from realtime.sockets.database import on_database_thread
from realtime.sockets.posting import post_queue
from tests.factories import RoomFactory, UserFactory, poster
from tests.support.queries import QueryLog, describe

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10
# A transaction's start is a statement of its own on SQLite (`BEGIN IMMEDIATE`, sent as a
# query); PostgreSQL's driver opens one with no statement counted.
BEGIN = 1 if connection.vendor == "sqlite" else 0


@pytest.fixture
async def queries() -> AsyncIterator[QueryLog]:
    """Counts the queries of every thread; stops this loop's sockets' tasks afterwards."""
    log = QueryLog()
    log.install()
    await log.watch_database_thread()
    yield log
    log.uninstall()
    # The process hub's reader, heartbeat and feeds live on this test's loop: end them here.
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@database_sync_to_async
def user_with_token() -> tuple[User, str]:
    user = UserFactory.create()
    return user, str(Token.objects.create(user=user).key)


@database_sync_to_async
def room_with_messages(count: int) -> Room:
    room = RoomFactory.create()
    for n in range(count):
        message_post(room=room, poster=poster(None), body=f"m{n}")
    return room


@database_sync_to_async
def waiting_job(owner: User) -> Job:
    return job_enqueue(owner=owner, kind="demo.sleep", params={"steps": 1}, countdown=60)[0]


@database_sync_to_async
def session_cookie(user: User) -> str:
    browser = Client()
    browser.force_login(user)
    return f"sessionid={browser.cookies['sessionid'].value}"


class Socket:
    """One in-process socket on `/ws/` (or the tutorial's route)."""

    def __init__(self, path: str = "/ws/", headers: list[tuple[bytes, bytes]] | None = None):
        self.communicator = WebsocketCommunicator(application, path, headers=headers or [])

    async def open(self) -> Socket:
        """Connect; on `/ws/`, wait for the greeting.

        The tutorial's route greets nobody, and accepts before it joins the room. A socket
        serves its frames one at a time, after its connection: the answer to a frame that it
        refuses (without a query) shows that the joining is done.
        """
        connected, _ = await self.communicator.connect(timeout=TIMEOUT)
        assert connected
        if self.communicator.scope["path"] == "/ws/":
            assert (await self.receive())["type"] == "hello"
        else:
            await self.communicator.send_to(text_data="{}")
            assert (await self.receive())["error"] == "invalid_frame"
        return self

    async def receive(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await self.communicator.receive_from(TIMEOUT))
        return frame

    async def request(self, **frame: Any) -> dict[str, Any]:
        """Send a frame with a `ref`; the reply that carries it (frames before it are skipped)."""
        frame.setdefault("ref", "r1")
        await self.communicator.send_to(text_data=json.dumps(frame))
        while True:
            reply = await self.receive()
            if reply.get("ref") == frame["ref"]:
                return reply

    async def close(self) -> None:
        await self.communicator.disconnect(timeout=TIMEOUT)


def token_header(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Token {token}".encode())]


def same_origin_browser(cookie: str) -> list[tuple[bytes, bytes]]:
    """What a browser on this site sends: its Origin, the Host, the session cookie."""
    return [
        (b"host", b"testserver"),
        (b"origin", b"http://testserver"),
        (b"cookie", cookie.encode()),
    ]


def assert_count(statements: list[tuple[str, str]], expected: int) -> None:
    assert len(statements) == expected, describe(statements)


# ---------------------------------------------------------------- handshake and session


async def test_connect_anonymous(queries):
    with queries.capture() as statements:
        socket = await Socket().open()

    assert_count(statements, 0)
    await socket.close()


async def test_connect_with_a_token(queries):
    _, token = await user_with_token()

    with queries.capture() as statements:
        socket = await Socket(headers=token_header(token)).open()

    assert_count(statements, 1)  # the token with its user
    await socket.close()


async def test_connect_with_a_session_cookie(queries):
    user, _ = await user_with_token()
    cookie = await session_cookie(user)

    with queries.capture() as statements:
        socket = await Socket(headers=same_origin_browser(cookie)).open()

    assert_count(statements, 2)  # the session, its user
    await socket.close()


async def test_ping(queries):
    socket = await Socket().open()

    with queries.capture() as statements:
        reply = await socket.request(type="ping")

    assert reply["type"] == "pong"
    assert_count(statements, 0)
    await socket.close()


async def test_auth(queries):
    _, token = await user_with_token()
    socket = await Socket().open()

    with queries.capture() as statements:
        reply = await socket.request(type="auth", token=token)

    assert reply["type"] == "authenticated"
    assert_count(statements, 1)  # the token with its user
    await socket.close()


# ---------------------------------------------------------------- rooms


async def test_subscribe_to_a_room(queries):
    room = await room_with_messages(3)
    socket = await Socket().open()

    # the room; the first socket of the process in the room: its feed's last seq; the
    # replay's last seq
    with queries.capture() as statements:
        reply = await socket.request(type="subscribe", channel=f"room:{room.slug}")

    assert (reply["type"], reply["seq"]) == ("subscribed", 3)
    assert_count(statements, 3)
    await socket.close()


async def test_subscribe_to_a_room_the_process_follows_already(queries):
    room = await room_with_messages(3)
    first, second = await Socket().open(), await Socket().open()
    await first.request(type="subscribe", channel=f"room:{room.slug}")

    # the room; the replay's last seq
    with queries.capture() as statements:
        reply = await second.request(type="subscribe", channel=f"room:{room.slug}")

    assert reply["type"] == "subscribed"
    assert_count(statements, 2)
    await first.close()
    await second.close()


@pytest.mark.parametrize("messages", [3, 60])
async def test_subscribe_to_a_room_since_a_seq(queries, messages):
    room = await room_with_messages(messages)
    socket = await Socket().open()

    # as above, and the messages after `since`: one query however many
    with queries.capture() as statements:
        reply = await socket.request(type="subscribe", channel=f"room:{room.slug}", since=0)

    assert (reply["type"], reply["seq"]) == ("subscribed", messages)
    replayed = [await socket.receive() for _ in range(messages)]
    assert [frame["seq"] for frame in replayed] == list(range(1, messages + 1))
    assert_count(statements, 4)
    await socket.close()


async def test_subscribe_to_an_unknown_room(queries):
    socket = await Socket().open()

    with queries.capture() as statements:
        reply = await socket.request(type="subscribe", channel="room:nowhere")

    assert reply["code"] == "not_found"
    assert_count(statements, 1)
    await socket.close()


async def test_unsubscribe_from_a_room(queries):
    room = await room_with_messages(1)
    socket = await Socket().open()
    await socket.request(type="subscribe", channel=f"room:{room.slug}")

    with queries.capture() as statements:
        reply = await socket.request(type="unsubscribe", channel=f"room:{room.slug}")

    assert reply["type"] == "unsubscribed"
    assert_count(statements, 0)
    await socket.close()


async def test_chat_send(queries):
    room = await room_with_messages(1)
    socket = await Socket().open()

    # (begin,) the poster's budget, the room (locked, its seq taken), the message
    with queries.capture() as statements:
        reply = await socket.request(type="chat.send", room=room.slug, body="hi")

    assert (reply["type"], reply["seq"]) == ("chat.sent", 2)
    assert_count(statements, 3 + BEGIN)
    await socket.close()


async def test_chat_send_with_a_client_id(queries):
    room = await room_with_messages(1)
    socket = await Socket().open()

    # the same: a client_id is taken as new (the unique index says when it is not)
    with queries.capture() as statements:
        reply = await socket.request(type="chat.send", room=room.slug, body="hi", client_id="c1")

    assert reply["type"] == "chat.sent"
    assert_count(statements, 3 + BEGIN)
    await socket.close()


async def test_chat_send_retried(queries):
    room = await room_with_messages(0)
    socket = await Socket().open()
    await socket.request(type="chat.send", room=room.slug, body="hi", client_id="c1")

    # as a new post: (begin,) budget, room, the insert the unique index skips; rolled back,
    # then (begin,) the look-up that finds the earlier message, and that message
    with queries.capture() as statements:
        reply = await socket.request(
            type="chat.send", room=room.slug, body="hi", client_id="c1", ref="r2"
        )

    assert (reply["type"], reply["duplicate"]) == ("chat.sent", True)
    assert_count(statements, 5 + 2 * BEGIN)
    await socket.close()


async def test_posts_sent_together_share_a_transaction(queries):
    # given: a room, and ten posts handed to this process's post queue at the same moment
    room = await room_with_messages(0)
    posts = [Post(room.slug, poster(None), f"m{n}", f"c{n}") for n in range(10)]

    # when
    with queries.capture() as statements:
        outcomes = await asyncio.gather(*(post_queue().post(post) for post in posts))

    # then: the first goes alone (nothing else was waiting), the other nine in one batch,
    # that is two transactions with one budget, room and insert each
    assert [o.message.seq for o in outcomes if isinstance(o, PostResult)] == list(range(1, 11))
    assert_count(statements, 2 * (3 + BEGIN))


async def test_chat_typing(queries):
    room = await room_with_messages(1)
    (_, typist_token), (_, reader_token) = await user_with_token(), await user_with_token()
    typist = await Socket(headers=token_header(typist_token)).open()
    reader = await Socket(headers=token_header(reader_token)).open()
    for socket in (typist, reader):
        await socket.request(type="subscribe", channel=f"room:{room.slug}")

    # none: the rule keeps what it needs in memory, and typing is never stored
    with queries.capture() as statements:
        await typist.communicator.send_to(
            text_data=json.dumps({"type": "chat.typing", "room": room.slug})
        )
        while (frame := await reader.receive())["type"] != "typing":
            pass

    assert frame["typing"] is True
    assert_count(statements, 0)
    await typist.close()
    await reader.close()


# ---------------------------------------------------------------- private rooms


@database_sync_to_async
def private_room_of(owner: User, messages: int) -> Room:
    room = room_create(slug=f"secret-{owner.pk}", created_by=owner, kind="private")
    for n in range(messages):
        message_post(room=room, poster=poster(owner), body=f"m{n}")
    return room


async def test_subscribe_to_a_private_room_as_a_member(queries):
    owner, token = await user_with_token()
    room = await private_room_of(owner, 3)
    socket = await Socket(headers=token_header(token)).open()

    # as to a public room: the room (if the member may read it); the feed's last seq; the
    # replay's last seq (if they still may: the membership is checked again, in that read)
    with queries.capture() as statements:
        reply = await socket.request(type="subscribe", channel=f"room:{room.slug}")

    assert (reply["type"], reply["seq"]) == ("subscribed", 3)
    assert_count(statements, 3)
    await socket.close()


async def test_subscribe_to_a_private_room_as_a_stranger(queries):
    owner, _ = await user_with_token()
    _, token = await user_with_token()
    room = await private_room_of(owner, 1)
    socket = await Socket(headers=token_header(token)).open()

    # as to an unknown room: one look
    with queries.capture() as statements:
        reply = await socket.request(type="subscribe", channel=f"room:{room.slug}", since=0)

    assert reply["code"] == "not_found"
    assert_count(statements, 1)
    await socket.close()


async def test_chat_send_to_a_private_room(queries):
    owner, token = await user_with_token()
    room = await private_room_of(owner, 1)
    socket = await Socket(headers=token_header(token)).open()

    # as to a public room: the poster's role comes with the room's lock, in its statement
    with queries.capture() as statements:
        reply = await socket.request(type="chat.send", room=room.slug, body="hi")

    assert (reply["type"], reply["seq"]) == ("chat.sent", 2)
    assert_count(statements, 3 + BEGIN)
    await socket.close()


async def test_messages_of_a_private_room_reach_its_sockets_with_no_query(queries):
    owner, token = await user_with_token()
    room = await private_room_of(owner, 0)
    reader = await Socket(headers=token_header(token)).open()
    await reader.request(type="subscribe", channel=f"room:{room.slug}")

    # the post itself; its delivery checks no membership (that was done at subscribe)
    with queries.capture() as statements:
        await on_database_thread(message_post)(room=room, poster=poster(owner), body="x")
        while (frame := await reader.receive())["type"] != "chat.message":
            pass

    assert frame["seq"] == 1
    assert_count(statements, 3 + BEGIN)
    await reader.close()


@database_sync_to_async
def message_of(user: User, room: Room) -> Message:
    return message_post(room=room, poster=poster(user), body="v1").message


async def test_chat_edit(queries):
    user, token = await user_with_token()
    room = await room_with_messages(1)
    message = await message_of(user, room)
    socket = await Socket(headers=token_header(token)).open()

    # the message with the room's rules; (begin,) the editor's budget, the room (locked, its
    # seq taken), the message, the change
    with queries.capture() as statements:
        reply = await socket.request(type="chat.edit", room=room.slug, id=message.pk, body="v2")

    assert (reply["type"], reply["seq"]) == ("chat.edited", 3)
    assert_count(statements, 5 + BEGIN)
    await socket.close()


async def test_chat_delete(queries):
    user, token = await user_with_token()
    room = await room_with_messages(1)
    message = await message_of(user, room)
    socket = await Socket(headers=token_header(token)).open()

    # the message with the room's rules; (begin,) the room, the message, the change
    with queries.capture() as statements:
        reply = await socket.request(type="chat.delete", room=room.slug, id=message.pk)

    assert (reply["type"], reply["seq"]) == ("chat.deleted", 3)
    assert_count(statements, 4 + BEGIN)
    await socket.close()


@pytest.mark.parametrize("messages", [3, 60])
async def test_subscribe_to_a_room_since_a_seq_with_changes(queries, messages):
    user, _ = await user_with_token()
    room = await room_with_messages(messages)
    message = await message_of(user, room)
    await database_sync_to_async(message_edit)(
        slug=room.slug, poster=poster(user), message_id=message.pk, body="v2"
    )
    socket = await Socket().open()

    # as without changes, and the changes after `since`: one query more however many
    with queries.capture() as statements:
        reply = await socket.request(type="subscribe", channel=f"room:{room.slug}", since=0)

    assert (reply["type"], reply["seq"]) == ("subscribed", messages + 2)
    replayed = [await socket.receive() for _ in range(messages + 2)]
    assert [frame["seq"] for frame in replayed] == list(range(1, messages + 3))
    assert replayed[-1]["type"] == "message.edited"
    assert_count(statements, 5)
    await socket.close()


async def test_changes_of_a_private_room_reach_its_sockets_with_no_query(queries):
    owner, token = await user_with_token()
    room = await private_room_of(owner, 0)
    message = await message_of(owner, room)
    reader = await Socket(headers=token_header(token)).open()
    await reader.request(type="subscribe", channel=f"room:{room.slug}")

    # the deletion itself; its delivery checks no membership (that was done at subscribe)
    with queries.capture() as statements:
        await on_database_thread(message_delete)(
            slug=room.slug, poster=poster(owner), message_id=message.pk
        )
        while (frame := await reader.receive())["type"] != "message.deleted":
            pass

    assert frame["seq"] == 2
    assert_count(statements, 4 + BEGIN)
    await reader.close()


@pytest.mark.usefixtures("fresh_gates")
async def test_chat_read(queries):
    owner, token = await user_with_token()
    room = await private_room_of(owner, 3)
    socket = await Socket(headers=token_header(token)).open()

    # the room with the reader's read state; the write; the state after it (the ack's unread,
    # and what the member's other sockets and room list are sent)
    with queries.capture() as statements:
        reply = await socket.request(type="chat.read", room=room.slug, seq=2)

    assert (reply["type"], reply["last_read_seq"]) == ("chat.read_ack", 2)
    assert_count(statements, 3)
    await socket.close()


@pytest.mark.parametrize("rooms", [1, 20])
async def test_subscribe_to_my_rooms(queries, rooms):
    owner, token = await user_with_token()
    for n in range(rooms):
        await database_sync_to_async(room_create)(slug=f"mine-{n}", created_by=owner)
    socket = await Socket(headers=token_header(token)).open()

    # the snapshot: every room with the member's read state and unread count, in one query
    with queries.capture() as statements:
        reply = await socket.request(type="subscribe", channel="rooms:mine")
        snapshot = await socket.receive()

    assert reply["type"] == "subscribed"
    assert len(snapshot["rooms"]) == rooms
    assert_count(statements, 1)
    await socket.close()


# ---------------------------------------------------------------- jobs


async def test_subscribe_to_a_job(queries):
    owner, token = await user_with_token()
    job = await waiting_job(owner)
    socket = await Socket(headers=token_header(token)).open()

    # the job, if the viewer may see it; its state once the feed is joined
    with queries.capture() as statements:
        reply = await socket.request(type="subscribe", channel=f"job:{job.pk}")

    assert reply["type"] == "subscribed"
    assert_count(statements, 2)
    await socket.close()


async def test_subscribe_to_someone_elses_job(queries):
    owner, _ = await user_with_token()
    _, token = await user_with_token()
    job = await waiting_job(owner)
    socket = await Socket(headers=token_header(token)).open()

    with queries.capture() as statements:
        reply = await socket.request(type="subscribe", channel=f"job:{job.pk}")

    assert reply["code"] == "not_found"
    assert_count(statements, 1)
    await socket.close()


async def test_subscribe_to_my_jobs(queries):
    _, token = await user_with_token()
    socket = await Socket(headers=token_header(token)).open()

    with queries.capture() as statements:
        reply = await socket.request(type="subscribe", channel="jobs:mine")

    assert reply["type"] == "subscribed"
    assert_count(statements, 0)
    await socket.close()


async def test_unsubscribe_from_a_job(queries):
    owner, token = await user_with_token()
    job = await waiting_job(owner)
    socket = await Socket(headers=token_header(token)).open()
    await socket.request(type="subscribe", channel=f"job:{job.pk}")

    with queries.capture() as statements:
        reply = await socket.request(type="unsubscribe", channel=f"job:{job.pk}")

    assert reply["type"] == "unsubscribed"
    assert_count(statements, 0)
    await socket.close()


# ---------------------------------------------------------------- the tutorial's route


async def test_tutorial_connect_to_a_room(queries):
    room = await room_with_messages(2)

    # the room; its feed's last seq (first socket of the process); the last seq to go live at
    with queries.capture() as statements:
        socket = await Socket(f"/ws/chat/{room.slug}/").open()

    assert_count(statements, 3)
    await socket.close()


async def test_tutorial_connect_creates_a_missing_room(queries):
    # the room looked for; validation: the slug is free; (begin,) insert; the feed's last seq;
    # the last seq to go live at
    with queries.capture() as statements:
        socket = await Socket("/ws/chat/brand-new/").open()

    assert await database_sync_to_async(Room.objects.filter(slug="brand-new").exists)()
    assert_count(statements, 5 + BEGIN)
    await socket.close()


async def test_tutorial_message(queries):
    room = await room_with_messages(0)
    socket = await Socket(f"/ws/chat/{room.slug}/").open()

    # the post: (begin,) the locked room, its seq, the message; the socket hears its own
    # message from the room's feed, in order, with no query
    with queries.capture() as statements:
        await socket.communicator.send_to(text_data=json.dumps({"message": "hello"}))
        echoed = await socket.receive()

    assert echoed == {"message": "hello"}
    assert await database_sync_to_async(Message.objects.filter(room=room).count)() == 1
    assert_count(statements, 3 + BEGIN)
    await socket.close()
