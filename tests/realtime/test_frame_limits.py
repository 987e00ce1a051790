"""Frame size limits on both servers: a huge frame is refused before it is read whole."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.processes import child_env, uvicorn
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def uvicorn_url(shared_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    service, url = uvicorn(child_env(**shared_env), log_dir / "frame-limits")
    yield url
    service.stop()


@pytest.fixture(params=["daphne", "uvicorn"])
def server_url(request: pytest.FixtureRequest, live_server_url: str) -> str:
    if request.param == "daphne":
        return live_server_url
    return str(request.getfixturevalue("uvicorn_url"))


async def test_a_frame_over_64_kib_gets_an_error_and_the_socket_stays(server_url):
    client = await WsClient.open(server_url)

    await client.send_raw('{"type":"ping","pad":"' + "x" * 100_000 + '"}')

    assert (await client.expect("error"))["code"] == "frame_too_large"
    assert (await client.request(type="ping"))["type"] == "pong"
    await client.close()


async def test_a_frame_over_1_mib_closes_the_socket(server_url):
    client = await WsClient.open(server_url)

    with contextlib.suppress(ConnectionClosed):  # the server may close while it is sent
        await client.send_raw("x" * (2 * 1024 * 1024))

    # uvicorn answers 1009 (message too big); Daphne fails the connection at once, so its
    # close frame may be lost while the client is still sending (1006 at the client).
    assert await client.closed(timeout=10) in (1009, 1006)
    other = await WsClient.open(server_url)  # the server itself is fine
    assert (await other.request(type="ping"))["type"] == "pong"
    await other.close()
