"""A rolling restart of an ASGI process: on SIGTERM it closes its sockets with 1012 spread over
the drain window, refuses new ones, answers readiness 503, then stops; clients that move to
another process and resume with `since` miss nothing and get nothing twice."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from asgiref.sync import sync_to_async

from chat.services import message_post
from tests.factories import RoomFactory, poster
from tests.support.processes import http_json, uvicorn
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

DRAIN_SECONDS = 3.0
CLIENTS = 8
POSTS = 60


async def test_sigterm_drains_sockets_over_the_window_and_clients_resume_elsewhere(
    shared_env, log_dir, second_server_url
):
    room = await sync_to_async(RoomFactory.create)()
    env = {**shared_env, "SWITCHBOARD_DRAIN_SECONDS": str(DRAIN_SECONDS)}
    server, url = uvicorn(env, log_dir)
    process = server.process
    assert process is not None
    try:
        clients = [await WsClient.open(url) for _ in range(CLIENTS)]
        for client in clients:
            await client.request(type="subscribe", channel=f"room:{room.slug}", since=0)

        async def post_all() -> None:
            for n in range(POSTS):
                await sync_to_async(message_post)(room=room, poster=poster(None), body=f"m{n}")
                await asyncio.sleep(DRAIN_SECONDS / POSTS * 1.5)

        posting = asyncio.ensure_future(post_all())
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        sent_at = time.monotonic()

        async def move(client: WsClient) -> tuple[int | None, float, WsClient]:
            code = await client.closed(timeout=DRAIN_SECONDS + 10)
            closed_at = time.monotonic() - sent_at
            seen = [m["seq"] for m in client.messages()]
            elsewhere = await WsClient.open(second_server_url)
            since = max(seen, default=0)
            await elsewhere.request(type="subscribe", channel=f"room:{room.slug}", since=since)
            elsewhere.frames[:0] = client.frames  # one history per client
            return code, closed_at, elsewhere

        moving = [asyncio.ensure_future(move(client)) for client in clients]
        await asyncio.sleep(0.2)
        # Meanwhile the draining process takes no new socket, and says it is not ready.
        late = await WsClient.open(url, greeted=False)
        late_code = await late.closed(timeout=5)
        status, readiness, _ = await sync_to_async(http_json)(f"{url}/api/health/ready/")

        moved = await asyncio.gather(*moving)
        await posting
        for _, _, client in moved:
            await client.drain(1.0)
        process.wait(timeout=DRAIN_SECONDS + 15)
    finally:
        server.stop()

    assert late_code == 1012
    assert status == 503
    assert readiness["checks"]["serving"]["ok"] is False
    codes = [code for code, _, _ in moved]
    close_times = sorted(at for _, at, _ in moved)
    assert codes == [1012] * CLIENTS
    # Spread over the window, not all at once.
    assert close_times[-1] - close_times[0] >= DRAIN_SECONDS * 0.5
    assert close_times[-1] <= DRAIN_SECONDS + 3
    for _, _, client in moved:
        assert [m["seq"] for m in client.messages()] == list(range(1, POSTS + 1))
        await client.close()
