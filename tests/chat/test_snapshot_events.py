"""Snapshot, then events: a page of history plus the room's events is the page read after.

A client reads a page over REST, then applies the `room.message` and `room.change` (an edit, a
deletion) events it hears, by `seq`.
Here each action runs in turn; its events go out through the kernel's publisher (after
commit) to the real channel layer, where a member of the room's group receives them; applied
to the page read before the action, they must give the page read after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from chat.models import Message, Room
from chat.services import message_delete, message_post
from realtime.kernel.names import room_group
from tests.factories import RoomFactory, UserFactory, poster
from tests.support.layer import Event, LayerListener

pytestmark = pytest.mark.django_db

Page = dict[str, Any]
LIMIT = 5  # the page: the newest five messages

# What a `chat.message` frame has that a message of the REST page has too.
MESSAGE_FIELDS = (
    "id",
    "room",
    "seq",
    "author",
    "author_name",
    "body",
    "created_at",
    "client_id",
    "edited_at",
    "deleted",
)


def apply_events(page: Page, events: list[Event], *, room: str, limit: int) -> Page:
    """The client's reducer: add each message newer than the page's `last_seq`, apply each
    newer change to its message if the page has it, keep the newest `limit` messages, oldest
    first; a repeat or an older event changes nothing."""
    messages = {message["seq"]: message for message in page["results"]}
    last_seq = page["last_seq"]
    for event in events:
        if event["type"] not in ("room.message", "room.change"):
            continue
        frame = event["frame"]
        if event["group"] != room_group(room) or frame["seq"] <= last_seq:
            continue
        last_seq = frame["seq"]
        if frame["type"] == "chat.message":
            # (a frame leaves out a `client_id` that is none)
            messages[frame["seq"]] = {field: frame.get(field) for field in MESSAGE_FIELDS}
            continue
        changed = messages.get(frame["message_seq"])
        if changed is None:  # not on the page
            continue
        if frame["type"] == "message.edited":
            changed.update(body=frame["body"], edited_at=frame["edited_at"])
        else:
            changed.update(body="", deleted=True)
    newest = sorted(messages)[-limit:]
    return {"results": [messages[seq] for seq in newest], "last_seq": last_seq}


def comparable(page: Page) -> Page:
    """Times as instants: REST writes UTC as `Z`, frames as `+00:00`."""
    return {
        "last_seq": page["last_seq"],
        "results": [
            {
                **message,
                "created_at": datetime.fromisoformat(message["created_at"]),
                "edited_at": message["edited_at"] and datetime.fromisoformat(message["edited_at"]),
            }
            for message in page["results"]
        ],
    }


def heard_up_to(before: Page, after: Page) -> Callable[[list[Event]], bool]:
    """Whether the events include the newest message read `after` (if any is new)."""
    new = after["last_seq"] if after["last_seq"] > before["last_seq"] else 0
    return lambda events: max((event["seq"] for event in events), default=0) >= new


@pytest.fixture
def listener() -> Iterator[LayerListener]:
    member = LayerListener()
    yield member
    member.close()


@pytest.fixture
def room(listener: LayerListener) -> Room:
    """A room with some history, whose group the listener is in."""
    room = RoomFactory.create(slug="lobby")
    for n in range(3):
        message_post(room=room, poster=poster(None), body=f"before {n}")
    listener.join(room_group(room.slug))
    return room


def signed_in(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_each_posts_events_applied_to_the_page_before_give_the_page_after(
    room, listener, django_capture_on_commit_callbacks
):
    alice, bob = UserFactory.create(username="alice"), UserFactory.create(username="bob")
    path = f"/api/rooms/{room.slug}/messages/"

    def post(client: APIClient, body: str, **extra: str) -> Callable[[], object]:
        return lambda: client.post(path, {"body": body, **extra}, format="json")

    def edit(client: APIClient, body: str, **extra: str) -> Callable[[], object]:
        def patch() -> object:
            message = Message.objects.get(room=room, client_id="a1")
            return client.patch(f"{path}{message.pk}/", {"body": body, **extra}, format="json")

        return patch

    def delete(user: User, body: str) -> Callable[[], object]:
        return lambda: message_delete(
            slug=room.slug,
            poster=poster(user),
            message_id=Message.objects.get(room=room, body=body).pk,
        )

    actions: list[tuple[str, Callable[[], object]]] = [
        ("alice posts over REST", post(signed_in(alice), "hello", client_id="a1")),
        ("anonymous posts over REST", post(APIClient(), "hi <b>all</b>")),
        ("alice's retry of a1: no new message", post(signed_in(alice), "hello", client_id="a1")),
        (
            "bob posts through the service",
            lambda: message_post(room=room, poster=poster(bob), body="yo"),
        ),
        ("a refused post: no event", post(signed_in(bob), "")),
        ("bob posts a long one", post(signed_in(bob), "x" * 4000)),
        ("alice posts again", post(signed_in(alice), "  spaced\n\ttext  ", client_id="a2")),
        ("alice edits a1 over REST", edit(signed_in(alice), "hello, edited", client_id="e1")),
        ("alice's retry of e1: no event", edit(signed_in(alice), "hello, edited", client_id="e1")),
        ("bob may not edit a1: no event", edit(signed_in(bob), "bob was here")),
        ("bob deletes his message", delete(bob, "yo")),
    ]
    reader = APIClient()

    def read() -> Page:
        body: Page = reader.get(f"{path}?limit={LIMIT}").json()
        return body

    for name, action in actions:
        # given: the page a client holds
        before, heard = read(), len(listener.received())

        # when: the action commits, and its events go out
        with django_capture_on_commit_callbacks(execute=True):
            action()
        after = read()
        events = listener.wait_for(heard_up_to(before, after), since=heard)

        # then: the page and the events give the page read now
        assert comparable(apply_events(before, events, room=room.slug, limit=LIMIT)) == (
            comparable(after)
        ), name

    final = read()
    assert [m["seq"] for m in final["results"]] == [4, 5, 6, 7, 8]
    assert final["last_seq"] == 10  # two changes took seqs 9 and 10
    assert [(m["body"], m["deleted"]) for m in final["results"][:3]] == [
        ("hello, edited", False),
        ("hi <b>all</b>", False),
        ("", True),
    ]


def test_a_page_long_behind_catches_up_from_all_the_events_since(
    room, listener, django_capture_on_commit_callbacks
):
    # given: a page read long ago, then many posts (more than a page)
    path = f"/api/rooms/{room.slug}/messages/?limit={LIMIT}"
    before = APIClient().get(path).json()
    author = UserFactory.create()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(12):
            message_post(
                room=room,
                poster=poster(author if n % 3 else None),
                body=f"burst {n}",
            )
    after = APIClient().get(path).json()
    events = listener.wait_for(lambda got: any(e["seq"] == after["last_seq"] for e in got))

    # then: the same page, and events heard twice (a process rejoining) change nothing
    assert len(events) == 12
    applied = apply_events(before, events + events, room=room.slug, limit=LIMIT)
    assert comparable(applied) == comparable(after)
