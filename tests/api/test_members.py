"""Rooms with members over REST: kinds, members, joining, settings, direct rooms, and the hostile
cases (a private room answers a stranger exactly as an unknown slug, byte for byte)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat.models import Room
from chat.services import member_add, message_post, room_create
from jobs.models import Job
from jobs.services import job_enqueue
from jobs.tasks import run_job
from tests.factories import poster

pytestmark = pytest.mark.django_db


def client_of(user: User | None) -> APIClient:
    """A client as a script is: with the user's token (or anonymous)."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def private(owner: User, member: User) -> Room:
    room = room_create(slug="secret", title="Secret plans", created_by=owner, kind="private")
    member_add(slug="secret", actor=owner, username="mia")
    message_post(room=room, poster=poster(owner), body="the plan")
    return room


def every_operation_on(client: APIClient, slug: str, user_id: int) -> list[tuple[str, int, bytes]]:
    """Each room operation on `slug`, as (what, status, body bytes)."""
    calls: list[tuple[str, Any]] = [
        ("detail", lambda: client.get(f"/api/rooms/{slug}/")),
        ("history", lambda: client.get(f"/api/rooms/{slug}/messages/")),
        ("history since 0", lambda: client.get(f"/api/rooms/{slug}/messages/?after=0")),
        ("history empty", lambda: client.get(f"/api/rooms/{slug}/messages/?after=99")),
        ("post", lambda: client.post(f"/api/rooms/{slug}/messages/", {"body": "hi"}, "json")),
        ("members", lambda: client.get(f"/api/rooms/{slug}/members/")),
        (
            "add a member",
            lambda: client.post(f"/api/rooms/{slug}/members/", {"username": "sam"}, "json"),
        ),
        ("settings", lambda: client.patch(f"/api/rooms/{slug}/", {"title": "Mine"}, "json")),
        ("join", lambda: client.post(f"/api/rooms/{slug}/join/")),
        (
            "role",
            lambda: client.patch(
                f"/api/rooms/{slug}/members/{user_id}/", {"role": "admin"}, "json"
            ),
        ),
        ("remove", lambda: client.delete(f"/api/rooms/{slug}/members/{user_id}/")),
        ("read state", lambda: client.get(f"/api/rooms/{slug}/read/")),
        (
            "mark read",
            lambda: client.put(f"/api/rooms/{slug}/read/", {"last_read_seq": 1}, "json"),
        ),
        ("seen by", lambda: client.get(f"/api/rooms/{slug}/readers/")),
        ("delete", lambda: client.delete(f"/api/rooms/{slug}/")),
    ]
    answers = []
    for what, call in calls:
        response = call()
        answers.append((what, response.status_code, response.content))
    return answers


@pytest.mark.parametrize("who", ["stranger", "anonymous"])
def test_a_private_room_answers_a_stranger_byte_for_byte_as_an_unknown_slug(
    private, owner, stranger, who
):
    # given: someone who is no member, guessing the private room's slug
    client = client_of(stranger if who == "stranger" else None)

    # when: every operation on it, then the same once no room has that slug
    guessed = every_operation_on(client, "secret", owner.pk)
    Room.objects.filter(pk=private.pk).delete()
    unknown = every_operation_on(client, "secret", owner.pk)

    # then: the same status and the same bytes, every time
    assert guessed == unknown
    statuses = {what: status for what, status, _ in guessed}
    if who == "stranger":
        assert set(statuses.values()) == {404}
        assert guessed[0][2] == b'{"code":"not_found","detail":"No room \'secret\'."}'
    else:  # writes ask to sign in first, for an unknown room too
        assert statuses["detail"] == statuses["history"] == statuses["members"] == 404


def test_the_room_list_shows_public_rooms_and_mine_with_kind_and_role(
    private, owner, member, stranger
):
    room_create(slug="square", created_by=stranger)

    def listed(user: User | None) -> list[tuple[str, str, str | None]]:
        body = client_of(user).get("/api/rooms/").json()
        return sorted((room["slug"], room["kind"], room["role"]) for room in body["results"])

    assert listed(member) == [("secret", "private", "member"), ("square", "public", None)]
    assert listed(owner) == [("secret", "private", "owner"), ("square", "public", None)]
    assert listed(stranger) == [("square", "public", "owner")]
    assert listed(None) == [("square", "public", None)]
    assert client_of(stranger).get("/api/rooms/").json()["count"] == 1


def test_creating_a_private_room_with_or_without_a_slug(owner):
    api = client_of(owner)

    named = api.post("/api/rooms/", {"slug": "plans", "kind": "private"}, "json")
    unnamed = api.post("/api/rooms/", {"title": "Hidden", "kind": "private"}, "json")
    direct = api.post("/api/rooms/", {"slug": "x", "kind": "direct"}, "json")

    assert named.status_code == unnamed.status_code == 201
    assert named.json() | {"created_at": None} == {
        "slug": "plans",
        "title": "plans",
        "kind": "private",
        "posting": "anyone",
        "role": "owner",
        "created_at": None,
        "last_message_at": None,
        "last_seq": 0,
        "online": 0,
        "last_read_seq": 0,
        "unread": 0,
    }
    assert len(unnamed.json()["slug"]) >= 20
    assert direct.status_code == 400


def test_members_see_the_history_and_the_member_list(private, member):
    api = client_of(member)

    history = api.get("/api/rooms/secret/messages/").json()
    members = api.get("/api/rooms/secret/members/").json()

    assert [m["body"] for m in history["results"]] == ["the plan"]
    assert [(m["user"]["username"], m["role"]) for m in members["results"]] == [
        ("olive", "owner"),
        ("mia", "member"),
    ]
    assert api.post("/api/rooms/secret/messages/", {"body": "ok"}, "json").status_code == 201


def test_inviting_changing_roles_and_removing(private, owner, member, stranger):
    api = client_of(owner)

    added = api.post("/api/rooms/secret/members/", {"username": "sam"}, "json")
    again = api.post("/api/rooms/secret/members/", {"username": "sam"}, "json")
    unknown = api.post("/api/rooms/secret/members/", {"username": "nobody"}, "json")
    promoted = api.patch(f"/api/rooms/secret/members/{stranger.pk}/", {"role": "admin"}, "json")
    removed = api.delete(f"/api/rooms/secret/members/{member.pk}/")

    assert (added.status_code, added.json()["user"]["username"]) == (201, "sam")
    assert again.status_code == 200
    assert (unknown.status_code, unknown.json()["code"]) == (404, "user_not_found")
    assert promoted.json()["role"] == "admin"
    assert removed.status_code == 204
    # the removed member now gets what a stranger gets
    assert client_of(member).get("/api/rooms/secret/").status_code == 404


def test_a_member_cannot_make_themselves_admin_nor_remove_the_owner(private, owner, member):
    api = client_of(member)

    as_admin = api.post("/api/rooms/secret/members/", {"username": "mia", "role": "admin"}, "json")
    promoted = api.patch(f"/api/rooms/secret/members/{member.pk}/", {"role": "owner"}, "json")
    owner_removed = api.delete(f"/api/rooms/secret/members/{owner.pk}/")
    settings = api.patch("/api/rooms/secret/", {"posting": "members"}, "json")

    for response in (as_admin, promoted, owner_removed, settings):
        assert (response.status_code, response.json()["code"]) == (403, "room_admin_required")


def test_the_last_owner_stays(private, owner):
    response = client_of(owner).delete(f"/api/rooms/secret/members/{owner.pk}/")

    assert (response.status_code, response.json()["code"]) == (409, "last_owner")


def test_joining_a_public_room_and_room_settings(owner, stranger):
    room_create(slug="club", created_by=owner, posting="members")
    api = client_of(stranger)

    refused = api.post("/api/rooms/club/messages/", {"body": "hi"}, "json")
    joined = api.post("/api/rooms/club/join/")
    joined_again = api.post("/api/rooms/club/join/")
    posted = api.post("/api/rooms/club/messages/", {"body": "hi"}, "json")
    changed = client_of(owner).patch("/api/rooms/club/", {"posting": "admins"}, "json")

    assert (refused.status_code, refused.json()["code"]) == (403, "posting_not_allowed")
    assert (joined.status_code, joined_again.status_code) == (201, 200)
    assert posted.status_code == 201
    assert (changed.json()["posting"], changed.json()["role"]) == ("admins", "owner")
    assert api.get("/api/rooms/club/").json()["role"] == "member"


def test_an_owner_deletes_a_room_and_others_may_not(private, owner, member):
    by_member = client_of(member).delete("/api/rooms/secret/")
    by_nobody = client_of(None).delete("/api/rooms/secret/")
    by_owner = client_of(owner).delete("/api/rooms/secret/")
    again = client_of(owner).delete("/api/rooms/secret/")

    assert (by_member.status_code, by_member.json()["code"]) == (403, "room_owner_required")
    assert by_nobody.status_code in (401, 403)
    assert by_owner.status_code == 204
    assert (again.status_code, again.json()["code"]) == (404, "not_found")
    assert client_of(member).get("/api/rooms/secret/").status_code == 404
    assert "secret" not in [
        room["slug"] for room in client_of(owner).get("/api/rooms/").json()["results"]
    ]


def test_a_direct_room_is_opened_once_per_pair(owner, member, stranger):
    first = client_of(owner).post("/api/direct-rooms/", {"username": "mia"}, "json")
    again = client_of(member).post("/api/direct-rooms/", {"username": "olive"}, "json")
    myself = client_of(owner).post("/api/direct-rooms/", {"username": "olive"}, "json")
    anonymous = client_of(None).post("/api/direct-rooms/", {"username": "olive"}, "json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["slug"] == again.json()["slug"]
    assert (first.json()["kind"], first.json()["role"]) == ("direct", "member")
    assert (myself.status_code, myself.json()["code"]) == (400, "invalid_membership")
    assert anonymous.status_code == 401
    slug = first.json()["slug"]
    assert client_of(stranger).get(f"/api/rooms/{slug}/").status_code == 404


@pytest.mark.django_db(transaction=True)  # the export runs in a process of its own
def test_an_export_of_a_room_its_owner_may_not_read_fails_as_for_an_unknown_room(private, stranger):
    def exported(slug: str) -> Job:
        job, _ = job_enqueue(
            owner=stranger, kind="room.export", params={"room": slug}, countdown=60
        )
        run_job(str(job.pk))
        job.refresh_from_db()
        return job

    guessed = exported("secret")
    Room.objects.filter(pk=private.pk).delete()
    unknown = exported("secret")

    assert guessed.status == unknown.status == "failed"
    assert guessed.error == unknown.error
    assert "secret" in str(guessed.error)
