"""`log:<name>` on `/ws/` against a live Daphne and real files: staff only, one reader per file,
resumable by byte offset, through rotation and truncation."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from tests.conftest import TailFile
from tests.factories import UserFactory
from tests.support.processes import Service
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def token_for(username: str, *, staff: bool) -> str:
    user = UserFactory.create(username=username, is_staff=staff)
    return str(Token.objects.get_or_create(user=user)[0].key)


async def socket(url: str, token: str | None = None) -> WsClient:
    if token is None:
        return await WsClient.open(url)
    return await WsClient.open(url, additional_headers={"Authorization": f"Token {token}"})


async def staff_socket(url: str) -> WsClient:
    return await socket(url, await token_for("root", staff=True))


async def lines(client: WsClient, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The next `count` lines the socket receives (several may come in one frame)."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await client.expect("log.lines", timeout)
        got += frame["lines"]
    assert len(got) == count, got
    return got


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def times_open(service: Service, tail: TailFile) -> int:
    """How many times the server process has the file open."""
    assert service.process is not None
    path = os.path.realpath(tail.path)
    return sum(1 for f in psutil.Process(service.process.pid).open_files() if f.path == path)


async def test_two_sockets_share_one_reader_and_get_every_line_in_order(live_daphne, tail_file):
    # given
    service, url = live_daphne
    tail_file.append(b"history\n")
    alice, bob = await staff_socket(url), await staff_socket(url)

    # when
    replies = [await c.request(type="subscribe", channel=tail_file.channel) for c in (alice, bob)]
    written = [f"line {n}".encode() for n in range(1, 501)]
    tail_file.append(b"".join(line + b"\n" for line in written))
    got = [await lines(alice, 500), await lines(bob, 500)]

    # then: from the end of the file on, every line once and in order, read once for both
    assert [reply["seq"] for reply in replies] == [8, 8]
    assert times_open(service, tail_file) == 1
    for received in got:
        assert [line["text"].encode() for line in received] == written
        assert received[-1]["offset"] == tail_file.path.stat().st_size
        assert not any(line["cut"] for line in received)
    assert await alice.drain(0.5) == []

    # when: one leaves; the other still gets lines; then it leaves too
    await alice.request(type="unsubscribe", channel=tail_file.channel)
    tail_file.append(b"after\n")
    assert [line["text"] for line in await lines(bob, 1)] == ["after"]
    await bob.close()

    # then: the last one out stops the reader, and the file is closed
    await eventually(lambda: times_open(service, tail_file) == 0)
    await alice.close()


async def test_subscribing_with_since_resumes_where_the_client_left_off(live_server_url, tail_file):
    # given: a client that saw two lines, then went away while two more were written
    tail_file.append(b"")
    first = await staff_socket(live_server_url)
    assert (await first.request(type="subscribe", channel=tail_file.channel))["seq"] == 0
    tail_file.append(b"a\nb\n")
    last = (await lines(first, 2))[-1]["offset"]
    await first.close()
    tail_file.append(b"c\nd\n")

    # when
    again = await staff_socket(live_server_url)
    reply = await again.request(type="subscribe", channel=tail_file.channel, since=last)
    tail_file.append(b"e\n")

    # then: what it missed, then live, none twice
    assert reply["seq"] == last == 4
    assert [(line["text"], line["offset"]) for line in await lines(again, 3)] == [
        ("c", 6),
        ("d", 8),
        ("e", 10),
    ]
    assert await again.drain(0.5) == []
    await again.close()


async def test_rotation_and_truncation_lose_and_repeat_no_line(live_server_url, tail_file):
    # given
    tail_file.append(b"one\n")
    client = await staff_socket(live_server_url)
    await client.request(type="subscribe", channel=tail_file.channel)

    # when: rotated (renamed, written once more, a new file made), then truncated in place
    os.rename(tail_file.path, f"{tail_file.path}.1")
    TailFile(tail_file.name, Path(f"{tail_file.path}.1")).append(b"two\n")
    tail_file.append(b"three\n")
    received = await lines(client, 2)
    with tail_file.path.open("r+b") as file:
        file.truncate(0)
    tail_file.append(b"4\n")  # shorter than what was read: the truncation shows
    received += await lines(client, 1)

    # then: the old file's last line, then the new file's lines, counted from 0 again
    assert [(line["text"], line["offset"]) for line in received] == [
        ("two", 8),
        ("three", 6),
        ("4", 2),
    ]
    assert await client.drain(0.5) == []
    await client.close()


async def test_long_lines_are_cut_and_bytes_that_are_not_utf8_replaced(live_server_url, tail_file):
    tail_file.append(b"")
    client = await staff_socket(live_server_url)
    await client.request(type="subscribe", channel=tail_file.channel)

    tail_file.append(b"x" * 10_000 + b"\n" + b"bad \xff\xfe end\n")

    assert await lines(client, 2) == [
        {"text": "x" * 4096, "offset": 10_001, "cut": True},  # SWITCHBOARD_TAIL_LINE_MAX
        {"text": "bad \ufffd\ufffd end", "offset": 10_012, "cut": False},
    ]
    await client.close()


async def test_a_file_that_does_not_exist_yet_is_waited_for(live_server_url, tail_file):
    client = await staff_socket(live_server_url)

    reply = await client.request(type="subscribe", channel=tail_file.channel)
    await asyncio.sleep(0.5)  # a few looks at a file that is not there
    tail_file.append(b"hello\n")

    assert reply["type"] == "subscribed"
    assert reply["seq"] == 0
    assert await lines(client, 1) == [{"text": "hello", "offset": 6, "cut": False}]
    await client.close()


async def test_anyone_but_staff_is_told_exactly_what_an_unknown_name_gets(
    live_server_url, tail_file
):
    # given: a log that exists, and one that is not configured
    tail_file.append(b"secret\n")
    member = await socket(live_server_url, await token_for("member", staff=False))
    anonymous = await socket(live_server_url)
    staff = await staff_socket(live_server_url)

    # when
    replies = [
        await member.request(type="subscribe", channel=tail_file.channel, since=0),
        await anonymous.request(type="subscribe", channel=tail_file.channel, since=0),
        await staff.request(type="subscribe", channel="log:not-configured", since=0),
    ]

    # then
    assert [{k: v for k, v in r.items() if k != "ref"} for r in replies] == [
        {"type": "error", "code": "not_found", "detail": "No such log."}
    ] * 3
    assert await member.drain(0.3) == []
    for client in (member, anonymous, staff):
        await client.close()
