"""A client that stops reading costs the server a bounded backlog, and the room does not wait.

Runs on uvicorn, the production server: it holds a send back while the client's socket is
full, which is what would let one slow reader stall a room's feed for everyone.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from asgiref.sync import sync_to_async
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.uri import parse_uri

from chat.services import message_post
from tests.factories import RoomFactory, poster
from tests.support.processes import Service, child_env, uvicorn
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

BACKLOG = 256 * 1024
BODY = "x" * 4000
MESSAGES = 3000  # 12 MB: far more than the backlog limit and the sockets' buffers


def never_reading_socket(url: str, subscribe: str) -> socket.socket:
    """A WebSocket client that subscribes and then never reads again (tiny receive buffer).

    Client libraries keep reading into their own memory; this one leaves bytes in the kernel.
    """
    uri = parse_uri(url)
    protocol = ClientProtocol(uri)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((uri.host, uri.port))
    raw.settimeout(10)
    protocol.send_request(protocol.connect())
    raw.sendall(b"".join(protocol.data_to_send()))
    while not any(isinstance(event, Response) for event in protocol.events_received()):
        protocol.receive_data(raw.recv(4096))
    assert protocol.handshake_exc is None, protocol.handshake_exc
    protocol.send_text(subscribe.encode())
    raw.sendall(b"".join(protocol.data_to_send()))
    return raw


@pytest.fixture
def server(shared_env: dict[str, str], log_dir: Path) -> Iterator[tuple[Service, str]]:
    service, url = uvicorn(
        child_env(**shared_env, SWITCHBOARD_WS_BACKLOG=str(BACKLOG)), log_dir / "slow-client"
    )
    yield service, url
    service.stop()


async def test_a_client_that_never_reads_is_dropped_and_the_others_get_everything(server):
    service, url = server
    room = await sync_to_async(RoomFactory.create)()
    channel = f"room:{room.slug}"
    reader = await WsClient.open(url)
    assert (await reader.request(type="subscribe", channel=channel))["type"] == "subscribed"
    slow = await sync_to_async(never_reading_socket)(
        url.replace("http", "ws") + "/ws/", f'{{"type":"subscribe","channel":"{channel}"}}'
    )
    await reader.expect(lambda f: f.get("type") == "presence" and f["count"] == 2)
    rss_before = psutil.Process(service.process.pid).memory_info().rss

    # when: the room gets 12 MB of messages
    started = time.monotonic()

    def post_all() -> None:
        for _ in range(MESSAGES):
            message_post(room=room, poster=poster(), body=BODY)

    async def read_all() -> list[int]:
        return [(await reader.expect("chat.message", timeout=30))["seq"] for _ in range(MESSAGES)]

    # (the reader reads while the messages are posted, as a live client does)
    seqs, _ = await asyncio.gather(read_all(), sync_to_async(post_all)())

    # then: the reader gets every message in order, without waiting for the slow client
    assert seqs == list(range(1, MESSAGES + 1))
    elapsed = time.monotonic() - started
    # and the slow client was dropped from the room (it may reconnect and resume by seq)
    await reader.expect(lambda f: f.get("type") == "presence" and f["count"] == 1, timeout=15)
    growth = psutil.Process(service.process.pid).memory_info().rss - rss_before
    assert growth < 8 * 1024 * 1024, f"server grew by {growth} bytes"
    assert "does not read fast enough" in service.log()
    print(f"{MESSAGES} messages in {elapsed:.1f}s; server RSS grew {growth / 1024:.0f} KiB")
    await reader.close()
    slow.close()
