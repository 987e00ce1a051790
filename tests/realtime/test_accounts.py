"""Sockets follow their account: signing out closes them; a user's open sockets are capped."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from rest_framework.authtoken.models import Token

from realtime.kernel.codes import CloseCode
from tests.factories import PASSWORD, UserFactory
from tests.support.processes import Service, child_env, daphne
from tests.support.ws import WsClient

# Its browsers sign in on the shared live server, whose login rate earlier tests (the
# contract's fuzzing) may have spent.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_rate_counters"),
]


class Browser:
    """Cookies and CSRF like a browser on the site's own origin (standard library only)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name and c.value is not None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> int:
        request = urllib.request.Request(  # noqa: S310
            self.base_url + path, data=json.dumps(body or {}).encode(), method="POST"
        )
        request.add_header("Content-Type", "application/json")
        request.add_header("Origin", self.base_url)
        request.add_header("Referer", self.base_url + "/")
        request.add_header("X-CSRFToken", self.cookie("csrftoken"))
        with self.opener.open(request, timeout=10) as response:
            return int(response.status)

    def sign_in(self, username: str) -> None:
        self.opener.open(self.base_url + "/api/auth/csrf/", timeout=10).read()
        assert self.post("/api/auth/login/", {"username": username, "password": PASSWORD}) == 200

    async def socket(self) -> WsClient:
        headers = {"Cookie": f"sessionid={self.cookie('sessionid')}"}
        return await WsClient.open(self.base_url, origin=self.base_url, additional_headers=headers)


@pytest.fixture
def member(db: None) -> Any:
    return UserFactory.create()


async def test_signing_out_closes_that_sessions_sockets_and_no_others(live_server_url, member):
    # given: the same user signed in twice (two browsers), and an anonymous visitor
    first, second = Browser(live_server_url), Browser(live_server_url)
    await sync_to_async(first.sign_in)(member.username)
    await sync_to_async(second.sign_in)(member.username)
    signed_out, still_in = await first.socket(), await second.socket()
    anonymous = await WsClient.open(live_server_url)
    assert signed_out.frames[0]["user"]["id"] == member.pk

    # when: the first browser signs out over REST
    assert await sync_to_async(first.post)("/api/auth/logout/") == 204

    # then: its socket is closed with "signed out"; the others go on
    assert await signed_out.closed(timeout=5) == CloseCode.SIGNED_OUT
    for client in (still_in, anonymous):
        assert (await client.request(type="ping"))["type"] == "pong"
        await client.close()


async def test_revoking_a_token_closes_the_sockets_opened_with_it(live_server_url, member):
    token = await sync_to_async(lambda: Token.objects.create(user=member).key)()
    by_header = await WsClient.open(
        live_server_url, additional_headers={"Authorization": f"Token {token}"}
    )
    by_frame = await WsClient.open(live_server_url)
    assert (await by_frame.request(type="auth", token=token))["type"] == "authenticated"

    # when: the token signs out (which deletes it)
    status = await sync_to_async(_post_with_token)(live_server_url, token)

    assert status == 204
    assert await by_header.closed(timeout=5) == CloseCode.SIGNED_OUT
    assert await by_frame.closed(timeout=5) == CloseCode.SIGNED_OUT


def _post_with_token(base_url: str, token: str) -> int:
    request = urllib.request.Request(base_url + "/api/auth/logout/", method="POST")  # noqa: S310
    request.add_header("Authorization", f"Token {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return int(response.status)


@pytest.fixture
def capped_servers(shared_env: dict[str, str], log_dir: Path) -> Iterator[list[str]]:
    """Two server processes sharing a cap of 3 sockets per user and 4 per address."""
    env = child_env(
        **shared_env, SWITCHBOARD_WS_MAX_PER_USER="3", SWITCHBOARD_WS_MAX_PER_ADDRESS="4"
    )
    started: list[tuple[Service, str]] = [daphne(env, log_dir / "capped") for _ in range(2)]
    yield [url for _, url in started]
    for service, _ in started:
        service.stop()


async def test_a_users_sockets_are_capped_across_server_processes(capped_servers, member):
    token = await sync_to_async(lambda: Token.objects.create(user=member).key)()
    headers = {"Authorization": f"Token {token}"}
    one, two = capped_servers
    open_ = [await WsClient.open(url, additional_headers=headers) for url in (one, two, one)]

    # when: a fourth socket, on either process
    refused = await WsClient.open(two, greeted=False, additional_headers=headers)

    # then: it is closed with "too many connections"; closing one makes room
    assert await refused.closed(timeout=5) == CloseCode.TOO_MANY_CONNECTIONS
    await open_[0].close()
    again = await WsClient.open(two, additional_headers=headers)
    assert (await again.request(type="ping"))["type"] == "pong"
    for client in [*open_[1:], again]:
        await client.close()


async def test_anonymous_sockets_are_capped_per_address(capped_servers):
    one, two = capped_servers
    open_ = [await WsClient.open(url) for url in (one, two, one, two)]

    refused = await WsClient.open(one, greeted=False)

    assert await refused.closed(timeout=5) == CloseCode.TOO_MANY_CONNECTIONS
    for client in open_:
        assert (await client.request(type="ping"))["type"] == "pong"
        await client.close()
