"""The rules of posting hold whichever way a post comes: REST, `/ws/` or the tutorial route.

The shared-budget tests run one uvicorn process as deployed behind one proxy (`NUM_PROXIES=1`;
uvicorn trusts `X-Forwarded-For` from 127.0.0.1), so each test can be its own anonymous
client address on REST and on both socket routes alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from chat.errors import ChatError, ChatErrorCode
from chat.models import Message
from chat.services import Poster, message_post
from tests.factories import RoomFactory, UserFactory, poster
from tests.support.processes import child_env, http_json, uvicorn
from tests.support.ws import WsClient

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_rate_counters"),
]

RATE = 6  # posts an hour, on the server below


@pytest.fixture(scope="module")
def limited_url(shared_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """A server behind one proxy, allowing RATE posts an hour per user or address."""
    env = child_env(**shared_env, CHAT_POST_RATE=f"{RATE}/hour", NUM_PROXIES="1")
    service, url = uvicorn(env, log_dir / "post-rules")
    yield url
    service.stop()


class Transports:
    """One client posting to one room over REST, `/ws/` and the tutorial route."""

    def __init__(self, url: str, room: str, headers: dict[str, str]) -> None:
        self.url, self.room, self.headers = url, room, headers

    async def open(self) -> Transports:
        self.gateway = await WsClient.open(self.url, additional_headers=self.headers)
        path = f"/ws/chat/{self.room}/"
        self.tab = await WsClient.open(self.url, path, additional_headers=self.headers)
        return self

    async def close(self) -> None:
        await self.gateway.close()
        await self.tab.close()

    async def rest(self, body: str) -> tuple[int, Any, Any]:
        url = f"{self.url}/api/rooms/{self.room}/messages/"
        return await sync_to_async(http_json)(
            url, method="POST", body={"body": body}, headers=self.headers
        )

    async def socket(self, body: str) -> dict[str, Any]:
        return await self.gateway.request(type="chat.send", room=self.room, body=body)

    async def tutorial(self, body: str) -> dict[str, Any]:
        """The tutorial's echo of the message, or its error frame."""
        await self.tab.send(message=body)
        return await self.tab.expect(lambda f: f.get("message") == body or "error" in f)

    async def post_on_each_in_turn(self, count: int) -> list[str]:
        """`count` posts, cycling REST, socket, tutorial: what each answered."""
        answers: list[str] = []
        for n in range(count):
            body = f"post {n}"
            if n % 3 == 0:
                status, _, _ = await self.rest(body)
                answers.append(f"rest {status}")
            elif n % 3 == 1:
                answers.append(f"socket {(await self.socket(body))['type']}")
            else:
                echo = await self.tutorial(body)
                answers.append(f"tutorial {echo.get('error', 'echo')}")
        return answers


def assert_refused_everywhere(
    rest: tuple[int, Any, Any], socket: dict[str, Any], tutorial: dict[str, Any]
) -> None:
    status, body, headers = rest
    assert status == 429
    assert body["code"] == "rate_limited"
    assert 1 <= int(headers["Retry-After"]) <= 3600
    assert socket["type"] == "error"
    assert socket["code"] == "rate_limited"
    assert socket["ref"]  # the refused request's own ref, so its sender knows to retry it
    assert isinstance(socket["retry_after"], int)
    assert 1 <= socket["retry_after"] <= 3600
    assert tutorial["error"] == "rate_limited"
    assert tutorial["message"].startswith("[not sent: Too many messages; try again in ")


def made_with_token() -> tuple[User, str, str]:
    user = UserFactory.create()
    room = RoomFactory.create()
    return user, room.slug, str(Token.objects.create(user=user).key)


async def test_one_user_has_one_posting_budget_across_rest_and_both_sockets(limited_url):
    # given: a user posting from a REST client, a gateway socket and a tutorial tab
    user, room, token = await database_sync_to_async(made_with_token)()
    alice = await Transports(limited_url, room, {"Authorization": f"Token {token}"}).open()

    # when: the whole rate, spread over the three, then one more on each
    accepted = await alice.post_on_each_in_turn(RATE)
    refused = (await alice.rest("over"), await alice.socket("over"), await alice.tutorial("over"))

    # then
    assert accepted == ["rest 201", "socket chat.sent", "tutorial echo"] * (RATE // 3)
    assert_refused_everywhere(*refused)
    stored = await database_sync_to_async(Message.objects.filter(author=user).count)()
    assert stored == RATE
    await alice.close()

    # and another user's budget is their own
    _, _, other_token = await database_sync_to_async(made_with_token)()
    bob = await Transports(limited_url, room, {"Authorization": f"Token {other_token}"}).open()
    assert (await bob.socket("mine"))["type"] == "chat.sent"
    await bob.close()


async def test_one_anonymous_address_has_one_posting_budget_across_transports(limited_url):
    # given: an anonymous client at one address (as the proxy names it) on all three
    room = (await database_sync_to_async(RoomFactory.create)()).slug
    address = f"198.51.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    anonymous = await Transports(limited_url, room, {"X-Forwarded-For": address}).open()

    # when
    accepted = await anonymous.post_on_each_in_turn(RATE)
    refused = (
        await anonymous.rest("over"),
        await anonymous.socket("over"),
        await anonymous.tutorial("over"),
    )

    # then
    assert accepted == ["rest 201", "socket chat.sent", "tutorial echo"] * (RATE // 3)
    assert_refused_everywhere(*refused)
    stored = await database_sync_to_async(Message.objects.filter(room__slug=room).count)()
    assert stored == RATE
    await anonymous.close()

    # and another address's budget is its own
    elsewhere = await Transports(limited_url, room, {"X-Forwarded-For": "203.0.113.9"}).open()
    assert (await elsewhere.socket("hi"))["type"] == "chat.sent"
    await elsewhere.close()


# ------------------------------------------------------------------ the same refusal everywhere

BAD = [
    pytest.param({"body": ""}, id="empty"),
    pytest.param({"body": "x" * 4001}, id="too-long"),
    pytest.param({"body": "a\x00b"}, id="nul"),
    pytest.param({"body": "hi", "client_id": ""}, id="empty-client-id"),
    pytest.param({"body": "hi", "client_id": "k" * 65}, id="long-client-id"),
    pytest.param({"body": "hi", "client_id": "k\x00"}, id="nul-client-id"),
]


@pytest.mark.parametrize("payload", BAD)
async def test_a_bad_message_gets_the_same_code_on_every_transport(live_server_url, payload):
    # given
    room = (await database_sync_to_async(RoomFactory.create)()).slug
    gateway = await WsClient.open(live_server_url)
    tab = await WsClient.open(live_server_url, f"/ws/chat/{room}/")

    # when
    status, rest, _ = await sync_to_async(http_json)(
        f"{live_server_url}/api/rooms/{room}/messages/", method="POST", body=payload
    )
    socket = await gateway.request(type="chat.send", room=room, **payload)
    tutorial: dict[str, Any] | None = None
    if "client_id" not in payload:  # the tutorial's frame has only the text
        await tab.send(message=payload["body"])
        tutorial = await tab.expect(lambda f: "error" in f)

    # then
    assert (status, rest["code"]) == (400, "invalid_message")
    assert socket["code"] == "invalid_message"
    assert tutorial is None or tutorial["error"] == "invalid_message"
    assert not await database_sync_to_async(Message.objects.exists)()
    await gateway.close()
    await tab.close()


# ------------------------------------------------------------------ the rules in the domain


@pytest.mark.parametrize(
    ("body", "client_id", "detail"),
    [
        ("", None, "empty"),
        ("x" * 4001, None, "longer than 4000"),
        ("a\x00b", None, "NUL"),
        ("hi", "", "client_id is empty"),
        ("hi", "k" * 65, "longer than 64"),
        ("hi", "k\x00", "client_id contains a NUL"),
    ],
)
def test_message_post_decides_what_a_message_may_hold(body, client_id, detail):
    room = RoomFactory.create()

    with pytest.raises(ChatError) as refused:
        message_post(room=room, poster=poster(), body=body, client_id=client_id)

    assert refused.value.code == ChatErrorCode.INVALID_MESSAGE
    assert detail in refused.value.detail
    assert not Message.objects.exists()


def test_the_longest_body_and_client_id_are_taken():
    room = RoomFactory.create()

    result = message_post(room=room, poster=poster(), body="x" * 4000, client_id="k" * 64)

    assert result.created


def test_a_user_spends_their_own_budget_and_an_anonymous_poster_their_address(settings):
    # given
    settings.CHAT_POST_RATE = "1/hour"
    room = RoomFactory.create()
    alice = UserFactory.create()

    # when: alice posts from two addresses, then two anonymous posters from one address
    message_post(room=room, poster=Poster(user=alice, address="192.0.2.1"), body="one")
    with pytest.raises(ChatError) as alice_again:
        message_post(room=room, poster=Poster(user=alice, address="192.0.2.2"), body="two")
    message_post(room=room, poster=Poster(user=None, address="192.0.2.1"), body="three")
    with pytest.raises(ChatError) as same_address:
        message_post(room=room, poster=Poster(user=None, address="192.0.2.1"), body="four")

    # then: the user's budget follows the user; an anonymous one's, the address
    assert alice_again.value.code == ChatErrorCode.RATE_LIMITED
    assert same_address.value.code == ChatErrorCode.RATE_LIMITED
    assert alice_again.value.retry_after is not None
    assert 1 <= alice_again.value.retry_after <= 3600
    assert list(Message.objects.values_list("body", flat=True)) == ["one", "three"]


def test_a_refused_post_spends_nothing(settings):
    # given: one post an hour, and anonymous posting off
    settings.CHAT_POST_RATE = "1/hour"
    settings.SWITCHBOARD_ANONYMOUS_POSTING = False
    room = RoomFactory.create()
    anonymous = Poster(user=None, address="192.0.2.7")

    # when: refused for who it is, then (allowed again) for its body
    with pytest.raises(ChatError) as not_allowed:
        message_post(room=room, poster=anonymous, body="hi")
    settings.SWITCHBOARD_ANONYMOUS_POSTING = True
    with pytest.raises(ChatError) as bad_body:
        message_post(room=room, poster=anonymous, body="")

    # then: neither spent the one post of the hour
    assert not_allowed.value.code == ChatErrorCode.POSTING_NOT_ALLOWED
    assert bad_body.value.code == ChatErrorCode.INVALID_MESSAGE
    assert message_post(room=room, poster=anonymous, body="now").created


def test_a_retry_of_an_earlier_post_spends_nothing(settings):
    # given: one post an hour, spent on a post with a client_id
    settings.CHAT_POST_RATE = "1/hour"
    room = RoomFactory.create()
    alice = Poster(user=UserFactory.create(), address="192.0.2.8")
    first = message_post(room=room, poster=alice, body="hello", client_id="c1")

    # when: the client, not having heard back, sends it again (twice), and someone else tries
    # the same client_id
    retries = [message_post(room=room, poster=alice, body="hello", client_id="c1") for _ in "ab"]
    with pytest.raises(ChatError) as conflict:
        message_post(room=room, poster=poster(), body="mine", client_id="c1")

    # then: each retry is answered with the first post, not refused; a new post still is
    assert [(r.created, r.message.pk) for r in retries] == [(False, first.message.pk)] * 2
    assert conflict.value.code == ChatErrorCode.CLIENT_ID_CONFLICT
    with pytest.raises(ChatError) as new_post:
        message_post(room=room, poster=alice, body="another", client_id="c2")
    assert new_post.value.code == ChatErrorCode.RATE_LIMITED
    # and the anonymous address's budget was not spent by its conflicting attempt
    assert message_post(room=room, poster=poster(), body="mine", client_id="c3").created
