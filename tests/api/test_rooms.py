"""`/api/rooms/`: listing with presence, creating, history by seq, posting."""

import pytest
from asgiref.sync import async_to_sync
from rest_framework import serializers
from rest_framework.test import APIClient

from api.rooms import RoomSerializer
from chat import presence
from chat.models import Message
from chat.services import message_post
from realtime.kernel.events import UserRef
from tests.factories import RoomFactory, UserFactory, poster

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def signed_in(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_rooms_list_newest_activity_first_with_online_counts(api):
    # given
    quiet, busy = RoomFactory.create(slug="quiet"), RoomFactory.create(slug="busy")
    message_post(room=busy, poster=poster(), body="hi")
    alice = UserRef(id=1, username="alice")
    for conn in ("tab1", "tab2"):  # one user, two tabs: counted once
        async_to_sync(presence.enter)("busy", conn, alice)
    async_to_sync(presence.enter)("busy", "anon", None)

    # when
    body = api.get("/api/rooms/").json()

    # then
    assert body["count"] == 2
    assert [r["slug"] for r in body["results"]] == ["busy", "quiet"]
    assert body["results"][0]["online"] == 2
    assert body["results"][0]["last_seq"] == 1
    assert body["results"][0]["last_message_at"] is not None
    assert body["results"][1]["online"] == 0
    assert quiet.title


def test_creating_a_room_needs_a_user(api, signed_in, user):
    assert api.post("/api/rooms/", {"slug": "new"}, format="json").status_code == 401

    response = signed_in.post("/api/rooms/", {"slug": "new", "title": "New"}, format="json")

    assert response.status_code == 201
    assert response.json()["slug"] == "new"
    again = signed_in.post("/api/rooms/", {"slug": "new"}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "room_exists"


@pytest.mark.parametrize("slug", ["", "café", "a" * 65, "has space", "dot.ted"])
def test_room_slugs_are_limited_to_what_channel_groups_accept(signed_in, slug):
    response = signed_in.post("/api/rooms/", {"slug": slug}, format="json")

    assert response.status_code == 400
    assert "slug" in response.json()["fields"]


def test_unknown_room_is_404_in_the_error_shape(api):
    response = api.get("/api/rooms/nope/messages/")

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "No room 'nope'."}


def test_history_by_seq_after_before_and_limit(api):
    room = RoomFactory.create()
    for n in range(1, 11):
        message_post(room=room, poster=poster(), body=f"m{n}")

    def seqs(query: str) -> list[int]:
        body = api.get(f"/api/rooms/{room.slug}/messages/?{query}").json()
        assert body["last_seq"] == 10
        return [m["seq"] for m in body["results"]]

    assert seqs("") == list(range(1, 11))
    assert seqs("limit=3") == [8, 9, 10]  # the newest, oldest first
    assert seqs("after=7") == [8, 9, 10]
    assert seqs("after=2&limit=2") == [3, 4]
    assert seqs("before=4") == [1, 2, 3]
    assert seqs("after=2&before=6") == [3, 4, 5]


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "after=-1", "after=x", "before=0"])
def test_history_parameters_are_checked_and_capped(api, query):
    room = RoomFactory.create()

    response = api.get(f"/api/rooms/{room.slug}/messages/?{query}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_posting_stores_the_body_exactly_and_a_retry_returns_the_same_message(signed_in, user):
    room = RoomFactory.create()
    body = "  <script>alert(1)</script>\n  tabs\tand spaces  "

    first = signed_in.post(
        f"/api/rooms/{room.slug}/messages/", {"body": body, "client_id": "k1"}, format="json"
    )
    retry = signed_in.post(
        f"/api/rooms/{room.slug}/messages/", {"body": body, "client_id": "k1"}, format="json"
    )

    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.json() == first.json()
    assert first.json()["body"] == body
    assert first.json()["author"] == {"id": user.pk, "username": user.username}
    assert Message.objects.get().body == body


def test_a_client_id_of_another_author_is_a_conflict(signed_in):
    room = RoomFactory.create()
    other = UserFactory.create()
    message_post(room=room, poster=poster(other), body="mine", client_id="k1")

    response = signed_in.post(
        f"/api/rooms/{room.slug}/messages/", {"body": "x", "client_id": "k1"}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "client_id_conflict"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "body"),
        ({"body": 5}, "body"),  # the schema says string: a number is not taken as its text
        ({"body": "hi", "client_id": 7}, "client_id"),
    ],
)
def test_messages_of_the_wrong_shape_are_refused(api, payload, field):
    room = RoomFactory.create()

    response = api.post(f"/api/rooms/{room.slug}/messages/", payload, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["fields"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"body": ""},
        {"body": "x" * 4001},
        {"body": "a\x00b"},
        {"body": "hi", "client_id": ""},
        {"body": "hi", "client_id": "k" * 65},
    ],
)
def test_messages_out_of_bounds_are_refused_by_the_chat_rules(api, payload):
    # given: strings the schema bounds, which the domain checks (as for a socket post)
    room = RoomFactory.create()

    # when
    response = api.post(f"/api/rooms/{room.slug}/messages/", payload, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_message"
    assert not Message.objects.exists()


def test_anonymous_posting_follows_the_setting(api, settings):
    room = RoomFactory.create()
    settings.SWITCHBOARD_ANONYMOUS_POSTING = False

    response = api.post(f"/api/rooms/{room.slug}/messages/", {"body": "hi"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "posting_not_allowed"
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("page", "status"), [("", 400), ("x", 400), ("0", 400), ("1", 200), ("9", 404)]
)
def test_rooms_page_is_a_page_number(api, page, status):
    RoomFactory.create()

    response = api.get(f"/api/rooms/?page={page}")

    assert response.status_code == status
    if status != 200:
        assert response.json()["code"] == {400: "invalid", 404: "not_found"}[status]


@pytest.mark.parametrize("written_to", [False, True])
def test_a_rooms_body_is_what_drfs_fields_give(written_to):
    # given
    room = RoomFactory.create(slug="here", title="Here é")
    if written_to:
        message_post(room=room, poster=poster(), body="hi")
        room.refresh_from_db()
    serializer = RoomSerializer(room, context={"online": {"here": 3}})

    # when
    body = serializer.data

    # then: field for field, in order, as the ModelSerializer's own fields would give it
    drf = serializers.ModelSerializer.to_representation(serializer, room)
    assert list(body.items()) == list(drf.items())
    assert body["online"] == 3
