"""Read state over REST: a member's position and unread counts, marking read, "seen by", and the
hostile cases (far-ahead positions, wrong types, strangers)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from chat.models import Membership, Room
from chat.services import member_add, message_post, room_create
from tests.api.test_members import client_of
from tests.factories import RoomFactory, UserFactory, poster

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_gates")]


@pytest.fixture
def private(owner: User, member: User) -> Room:
    """olive's private room with mia, who has read none of olive's three messages."""
    room = room_create(slug="secret", title="Secret plans", created_by=owner, kind="private")
    member_add(slug="secret", actor=owner, username="mia")
    for n in range(3):
        message_post(room=room, poster=poster(owner), body=f"m{n}")
    return room


def test_a_member_reads_and_moves_their_position(private, member):
    api = client_of(member)

    before = api.get("/api/rooms/secret/read/")
    marked = api.put("/api/rooms/secret/read/", {"last_read_seq": 2}, format="json")
    after = api.get("/api/rooms/secret/read/")

    assert before.json() == {"last_read_seq": 0, "unread": 3}
    assert marked.status_code == 200
    assert marked.json() == after.json() == {"last_read_seq": 2, "unread": 1}


def test_the_room_list_and_the_room_carry_read_state_for_members_only(private, member, owner):
    RoomFactory.create(slug="square")
    client_of(member).put("/api/rooms/secret/read/", {"last_read_seq": 1}, format="json")

    listed = {r["slug"]: r for r in client_of(member).get("/api/rooms/").json()["results"]}
    one = client_of(member).get("/api/rooms/secret/").json()
    anonymous = client_of(None).get("/api/rooms/square/").json()

    assert (listed["secret"]["last_read_seq"], listed["secret"]["unread"]) == (1, 2)
    assert (one["last_read_seq"], one["unread"]) == (1, 2)
    assert (listed["square"]["last_read_seq"], listed["square"]["unread"]) == (None, None)
    assert (anonymous["last_read_seq"], anonymous["unread"]) == (None, None)


def test_a_position_far_ahead_is_the_rooms_last_and_never_goes_back(private, member):
    api = client_of(member)

    far = api.put("/api/rooms/secret/read/", {"last_read_seq": 2**63 - 1}, format="json")
    back = api.put("/api/rooms/secret/read/", {"last_read_seq": 1}, format="json")

    assert far.json() == {"last_read_seq": 3, "unread": 0}
    assert back.json() == {"last_read_seq": 3, "unread": 0}
    assert Membership.objects.get(room=private, user=member).last_read_seq == 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"last_read_seq": "2"},
        {"last_read_seq": 2.5},
        {"last_read_seq": True},
        {"last_read_seq": -1},
        {"last_read_seq": None},
        {"last_read_seq": 2**63},
        {"last_read_seq": [2]},
    ],
)
def test_a_position_that_is_no_whole_seq_is_refused(private, member, body):
    response = client_of(member).put("/api/rooms/secret/read/", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert Membership.objects.get(room=private, user=member).last_read_seq == 0


def test_a_reader_of_a_public_room_who_is_no_member_is_told_to_join(owner):
    RoomFactory.create(slug="square")
    reader = UserFactory.create()

    got = client_of(reader).get("/api/rooms/square/read/")
    put = client_of(reader).put("/api/rooms/square/read/", {"last_read_seq": 0}, format="json")
    anonymous = client_of(None).get("/api/rooms/square/read/")

    assert (got.status_code, got.json()["code"]) == (403, "not_a_member")
    assert (put.status_code, put.json()["code"]) == (403, "not_a_member")
    assert anonymous.status_code in (401, 403)


def test_seen_by_lists_each_members_position_up_to_the_size_set(private, owner, member, settings):
    client_of(owner).put("/api/rooms/secret/read/", {"last_read_seq": 3}, format="json")
    client_of(member).put("/api/rooms/secret/read/", {"last_read_seq": 2}, format="json")

    seen = client_of(member).get("/api/rooms/secret/readers/")
    settings.CHAT_SEEN_BY_MAX_MEMBERS = 1
    too_large = client_of(member).get("/api/rooms/secret/readers/")

    assert seen.json() == {
        "results": [
            {"user": {"id": owner.pk, "username": "olive"}, "last_read_seq": 3},
            {"user": {"id": member.pk, "username": "mia"}, "last_read_seq": 2},
        ],
        "last_seq": 3,
    }
    assert (too_large.status_code, too_large.json()["code"]) == (409, "room_too_large")
