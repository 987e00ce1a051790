"""`/ws/` on a live Daphne: Origin policy, session cookie and token auth, first frames."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from realtime.kernel.events import server_frame_adapter

pytestmark = pytest.mark.django_db(transaction=True)


def ws_url(live_server_url: str) -> str:
    return live_server_url.replace("http://", "ws://") + "/ws/"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    frame = json.loads(await ws.recv(decode=True))
    server_frame_adapter.validate_python(frame)  # every frame sent matches its schema
    return dict(frame)


async def hello(live_server_url: str, **kwargs: Any) -> dict[str, Any]:
    async with connect(ws_url(live_server_url), open_timeout=5, **kwargs) as ws:
        return await receive(ws)


async def refused(live_server_url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as raised:
        async with connect(ws_url(live_server_url), open_timeout=5, **kwargs):
            pass
    return raised.value.response.status_code


@pytest.fixture
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def test_anonymous_script_without_origin_is_accepted_as_anonymous(live_server_url):
    frame = await hello(live_server_url)

    assert frame == {"type": "hello", "protocol": 1, "user": None}


async def test_same_origin_browser_with_session_cookie_is_the_user(
    live_server_url, session_cookie, user
):
    frame = await hello(
        live_server_url, origin=live_server_url, additional_headers={"Cookie": session_cookie}
    )

    assert frame["user"] == {"id": user.pk, "username": user.username}


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1", "null"])
async def test_foreign_or_null_origin_with_a_cookie_is_refused(
    live_server_url, session_cookie, origin
):
    status = await refused(
        live_server_url, origin=origin, additional_headers={"Cookie": session_cookie}
    )

    assert status == 403


async def test_foreign_origin_is_refused_even_without_credentials(live_server_url):
    assert await refused(live_server_url, origin="http://evil.example") == 403


async def test_cookie_without_any_origin_is_refused(live_server_url, session_cookie):
    assert await refused(live_server_url, additional_headers={"Cookie": session_cookie}) == 403


async def test_token_in_authorization_header_is_the_user(live_server_url, token, user):
    frame = await hello(live_server_url, additional_headers={"Authorization": f"Token {token}"})

    assert frame["user"] == {"id": user.pk, "username": user.username}


async def test_bad_token_is_refused_not_downgraded_to_anonymous(live_server_url):
    status = await refused(live_server_url, additional_headers={"Authorization": "Token nope"})

    assert status == 403


async def test_token_in_the_url_is_ignored(live_server_url, token):
    async with connect(ws_url(live_server_url) + f"?token={token}", open_timeout=5) as ws:
        frame = await receive(ws)

    assert frame["user"] is None


async def test_auth_frame_authenticates_an_open_socket(live_server_url, token, user):
    async with connect(ws_url(live_server_url), open_timeout=5) as ws:
        await receive(ws)  # hello, anonymous
        await ws.send(json.dumps({"type": "auth", "token": "wrong", "ref": 1}))
        failed = await receive(ws)
        await ws.send(json.dumps({"type": "auth", "token": token, "ref": 2}))
        ok = await receive(ws)

    assert failed == {"type": "error", "code": "auth_failed", "detail": "Invalid token.", "ref": 1}
    assert ok == {
        "type": "authenticated",
        "user": {"id": user.pk, "username": user.username},
        "ref": 2,
    }


@pytest.mark.parametrize("path", ["/ws", "/ws/nowhere/", "/ws/chat/", "/ws/chat/a/b/", "/other/"])
async def test_a_path_with_no_route_is_refused_at_the_handshake(live_server_url, path):
    url = ws_url(live_server_url).removesuffix("/ws/") + path

    with pytest.raises(InvalidStatus) as raised:
        async with connect(url, open_timeout=5):
            pass

    assert raised.value.response.status_code == 403
