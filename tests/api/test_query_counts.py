"""How many SQL queries each REST endpoint makes: pinned, and the same whatever the page size.

Each number is what the endpoint needs now. Lists run at two page (and data) sizes against
one pinned number, so a query per row fails them. Signed-in calls send a token, as clients
do: finding the token and its user is one of the queries counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat.models import Room
from chat.services import message_delete, message_edit, message_post, room_create, room_join
from jobs.kinds import export_path
from jobs.models import Job
from jobs.services import (
    job_claim,
    job_enqueue,
    job_log_append,
    job_output_append,
    job_share_create,
)
from jobs.tasks import run_job
from tests.factories import PASSWORD, RoomFactory, UserFactory, poster
from tests.support.queries import QueryLog, describe

pytestmark = pytest.mark.django_db

SLEEP: dict[str, Any] = {"kind": "demo.sleep", "params": {"steps": 1, "max_seconds": 0}}
# (rows in the database, rows asked for): a small page and a big one
SIZES = [pytest.param(2, 2, id="small"), pytest.param(40, 30, id="large")]


@pytest.fixture
def owner() -> User:
    return UserFactory.create()


@pytest.fixture
def api(owner: User) -> APIClient:
    """A client that signs each request with the owner's token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    return client


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def room() -> Room:
    return RoomFactory.create(slug="lobby")


def queued(owner: User) -> Job:
    return job_enqueue(owner=owner, **SLEEP, countdown=60)[0]


# ---------------------------------------------------------------- rooms


@pytest.mark.parametrize(("rooms", "page_size"), SIZES)
def test_rooms_list(anonymous, django_assert_num_queries, rooms, page_size):
    for _ in range(rooms):
        RoomFactory.create()

    # the page, full: then the count (presence counts come from Redis)
    with django_assert_num_queries(2):
        response = anonymous.get(f"/api/rooms/?page_size={page_size}")

    assert response.status_code == 200
    assert len(response.json()["results"]) == page_size


@pytest.mark.parametrize(("rooms", "page_size"), SIZES)
def test_rooms_list_last_page(anonymous, django_assert_num_queries, rooms, page_size):
    for _ in range(rooms + 1):
        RoomFactory.create()

    # the page: shorter than a full one, it is the last, and tells the count
    with django_assert_num_queries(1):
        response = anonymous.get(f"/api/rooms/?page_size={page_size}&page=2")

    assert response.status_code == 200
    assert response.json()["count"] == rooms + 1


def test_rooms_create(api, django_assert_num_queries):
    # token; validation: the creator exists, the slug is free; savepoint, insert, the
    # creator's membership as owner (one more since rooms have members), release
    with django_assert_num_queries(7):
        response = api.post("/api/rooms/", {"slug": "new-room"}, format="json")

    assert response.status_code == 201


def test_rooms_detail(anonymous, room, django_assert_num_queries):
    with django_assert_num_queries(1):
        response = anonymous.get(f"/api/rooms/{room.slug}/")

    assert response.status_code == 200


@pytest.mark.parametrize("limit", [5, 50])
def test_room_messages_list(anonymous, room, owner, django_assert_num_queries, limit):
    # given: more messages than either page, by a user and anonymous
    for n in range(60):
        message_post(
            room=room,
            poster=poster(owner if n % 2 else None),
            body=f"m{n}",
        )

    # the page, each row with its room's last seq: no query per message, none for the room
    with django_assert_num_queries(1):
        response = anonymous.get(f"/api/rooms/{room.slug}/messages/?limit={limit}")

    assert response.status_code == 200
    assert len(response.json()["results"]) == limit


def test_room_messages_post(api, room, django_assert_num_queries):
    # token, room; savepoint, the poster's budget, the room (locked, its seq taken), the
    # message, release
    with django_assert_num_queries(7):
        response = api.post(f"/api/rooms/{room.slug}/messages/", {"body": "hi"}, format="json")

    assert response.status_code == 201


def test_room_messages_post_with_a_client_id(api, room, django_assert_num_queries):
    # the same: a client_id is taken as new (the unique index says when it is not)
    with django_assert_num_queries(7):
        response = api.post(
            f"/api/rooms/{room.slug}/messages/", {"body": "hi", "client_id": "c1"}, format="json"
        )

    assert response.status_code == 201


def test_room_messages_post_retried(api, room, django_assert_num_queries):
    api.post(f"/api/rooms/{room.slug}/messages/", {"body": "hi", "client_id": "c1"}, format="json")

    # token, room; savepoint, budget, room, the insert the unique index skips, rollback to
    # and release; then savepoint, the look-up that finds the earlier message, that message,
    # release
    with django_assert_num_queries(12):
        response = api.post(
            f"/api/rooms/{room.slug}/messages/", {"body": "hi", "client_id": "c1"}, format="json"
        )

    assert response.status_code == 200


def test_room_message_edit(api, owner, room, django_assert_num_queries):
    message = message_post(room=room, poster=poster(owner), body="hi").message

    # token, the message with the room's rules; savepoint, the editor's budget, the room
    # (locked, its seq taken), the message, the change, release
    with django_assert_num_queries(8):
        response = api.patch(
            f"/api/rooms/{room.slug}/messages/{message.pk}/", {"body": "hello"}, format="json"
        )

    assert response.status_code == 200


def test_room_message_edit_with_a_client_id(api, owner, room, django_assert_num_queries):
    message = message_post(room=room, poster=poster(owner), body="hi").message

    # one more: the look-up of an earlier change with that client_id
    with django_assert_num_queries(9):
        response = api.patch(
            f"/api/rooms/{room.slug}/messages/{message.pk}/",
            {"body": "hello", "client_id": "e1"},
            format="json",
        )

    assert response.status_code == 200


def test_room_message_delete(api, owner, room, django_assert_num_queries):
    message = message_post(room=room, poster=poster(owner), body="hi").message

    # token, the message with the room's rules; savepoint, the room (locked, its seq taken),
    # the message, the change, release (a deletion spends no budget)
    with django_assert_num_queries(7):
        response = api.delete(f"/api/rooms/{room.slug}/messages/{message.pk}/")

    assert response.status_code == 204


def test_room_message_delete_of_an_edited_message(api, owner, room, django_assert_num_queries):
    message = message_post(room=room, poster=poster(owner), body="hi").message
    api.patch(f"/api/rooms/{room.slug}/messages/{message.pk}/", {"body": "hello"}, format="json")

    # one more: the texts of its edits go with it
    with django_assert_num_queries(8):
        response = api.delete(f"/api/rooms/{room.slug}/messages/{message.pk}/")

    assert response.status_code == 204


@pytest.mark.parametrize(("messages", "changes"), [(2, 1), (30, 20)])
def test_room_messages_list_with_changes(
    anonymous, room, owner, messages, changes, django_assert_num_queries
):
    # edited and deleted messages are read with the page: no query per message
    api_user = poster(owner)
    posted = [
        message_post(room=room, poster=api_user, body=f"m{n}").message for n in range(messages)
    ]
    for n, message in enumerate(posted[:changes]):
        if n % 2:
            message_delete(slug=room.slug, poster=api_user, message_id=message.pk)
        else:
            message_edit(slug=room.slug, poster=api_user, message_id=message.pk, body="edited")

    with django_assert_num_queries(1):
        response = anonymous.get(f"/api/rooms/{room.slug}/messages/?limit=50")

    assert len(response.json()["results"]) == messages


# ---------------------------------------------------------------- jobs


def test_job_kinds(api, django_assert_num_queries):
    with django_assert_num_queries(1):
        response = api.get("/api/job-kinds/")

    assert response.status_code == 200


def test_jobs_enqueue(api, django_assert_num_queries):
    # token; savepoint, the job (marked sent), release
    with django_assert_num_queries(4):
        response = api.post("/api/jobs/", SLEEP, format="json")

    assert response.status_code == 202


def test_jobs_enqueue_with_the_active_jobs_cap(api, settings, django_assert_num_queries):
    settings.JOBS_MAX_ACTIVE_PER_USER = 5

    # ...and under the savepoint: the owner's row locked, their unfinished jobs counted
    with django_assert_num_queries(6):
        response = api.post("/api/jobs/", SLEEP, format="json")

    assert response.status_code == 202


def test_jobs_enqueue_replayed(api, django_assert_num_queries):
    api.post("/api/jobs/", SLEEP, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    # token; the job of that key
    with django_assert_num_queries(2):
        response = api.post("/api/jobs/", SLEEP, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert response.status_code == 202


@pytest.mark.parametrize(("jobs", "page_size"), SIZES)
def test_jobs_list(api, owner, django_assert_num_queries, jobs, page_size):
    for _ in range(jobs):
        queued(owner)

    # token, the page, full: then the count
    with django_assert_num_queries(3):
        response = api.get(f"/api/jobs/?page_size={page_size}")

    assert response.status_code == 200
    assert len(response.json()["results"]) == page_size


@pytest.mark.parametrize(("jobs", "page_size"), SIZES)
def test_jobs_list_last_page(api, owner, django_assert_num_queries, jobs, page_size):
    for _ in range(jobs + 1):
        queued(owner)

    # token, the page: shorter than a full one, it is the last, and tells the count
    with django_assert_num_queries(2):
        response = api.get(f"/api/jobs/?page_size={page_size}&page=2")

    assert response.status_code == 200
    assert response.json()["count"] == jobs + 1


def test_jobs_detail(api, owner, django_assert_num_queries):
    job = queued(owner)

    with django_assert_num_queries(2):
        response = api.get(f"/api/jobs/{job.pk}/")

    assert response.status_code == 200


def test_jobs_cancel_waiting(api, owner, django_assert_num_queries):
    job = queued(owner)

    # token, the job; the request (savepoint, update, read, release); the cancellation
    # (savepoint, update, its attempt if it had one, read, release); the job as it is now
    with django_assert_num_queries(12):
        response = api.post(f"/api/jobs/{job.pk}/cancel/")

    assert response.json()["status"] == "cancelled"


def test_jobs_cancel_running(api, owner, django_assert_num_queries):
    job = queued(owner)
    job_claim(job_id=str(job.pk))

    # token, the job; the request (savepoint, update, read, release); the job as it is now
    with django_assert_num_queries(7):
        response = api.post(f"/api/jobs/{job.pk}/cancel/")

    assert response.json()["cancel_requested"] is True


def test_jobs_output(api, owner, django_assert_num_queries):
    job = queued(owner)
    job_output_append(job_id=job.pk, chunks=[f"word{n} " for n in range(30)])

    # token, the job, the page
    with django_assert_num_queries(3):
        response = api.get(f"/api/jobs/{job.pk}/output/?after=10&limit=5")

    assert len(response.json()["results"]) == 5


def test_jobs_attempts(api, owner, django_assert_num_queries):
    job = queued(owner)
    job_claim(job_id=str(job.pk))

    # token, the job, its attempts
    with django_assert_num_queries(3):
        response = api.get(f"/api/jobs/{job.pk}/attempts/")

    assert [a["number"] for a in response.json()] == [1]


def test_jobs_shared_read(owner, django_assert_num_queries):
    job = queued(owner)
    _, token = job_share_create(job=job, owner=owner, expires_in=3600)

    # the share with its job, in one query (no user, no token to look up)
    with django_assert_num_queries(1):
        response = APIClient().get(f"/api/jobs/{job.pk}/?share={token}")

    assert response.json()["id"] == str(job.pk)


@pytest.mark.parametrize("limit", [5, 100])
def test_jobs_log(api, owner, django_assert_num_queries, limit):
    job = queued(owner)
    job_claim(job_id=str(job.pk))
    for n in range(120):
        job_log_append(job_id=job.pk, line=f"line {n}")

    # token, the job, the page
    with django_assert_num_queries(3):
        response = api.get(f"/api/jobs/{job.pk}/log/?limit={limit}")

    assert len(response.json()["results"]) == limit


@pytest.fixture
def export(owner: User) -> Iterator[Job]:
    """A `room.export` run in process to its end, with its file."""
    room = RoomFactory.create()
    message_post(room=room, poster=poster(None), body="exported")
    job, _ = job_enqueue(owner=owner, kind="room.export", params={"room": room.slug}, countdown=60)
    run_job(str(job.pk))
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    yield job
    default_storage.delete(export_path(job, "jsonl"))


@pytest.mark.django_db(transaction=True)  # the export runs in a process of its own
def test_jobs_download(api, export, django_assert_num_queries):
    with django_assert_num_queries(2):
        response = api.get(f"/api/jobs/{export.pk}/download/")

    assert response.status_code == 200
    assert b"exported" in b"".join(response.streaming_content)


def test_jobs_of_another_user_or_unknown(api, django_assert_num_queries):
    # The refusal costs what a look-up does: token, job
    with django_assert_num_queries(2):
        response = api.get(f"/api/jobs/{uuid.uuid4()}/")

    assert response.status_code == 404


# ---------------------------------------------------------------- auth


def test_auth_csrf(anonymous, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = anonymous.get("/api/auth/csrf/")

    assert response.status_code == 200


def test_auth_login(owner, django_assert_num_queries):
    browser = Client()

    # the user; the new session (a free key; savepoint, insert, release); last_login; the
    # session saved with the user in it (savepoint, update, release)
    with django_assert_num_queries(9):
        response = browser.post(
            "/api/auth/login/",
            {"username": owner.username, "password": PASSWORD},
            content_type="application/json",
        )

    assert response.status_code == 200


def test_auth_token(owner, anonymous, django_assert_num_queries):
    # the user; the token looked for, then made (savepoint, insert, release)
    with django_assert_num_queries(5):
        response = anonymous.post(
            "/api/auth/token/", {"username": owner.username, "password": PASSWORD}, format="json"
        )

    assert response.status_code == 200


def test_auth_token_again(owner, anonymous, django_assert_num_queries):
    Token.objects.create(user=owner)

    with django_assert_num_queries(2):
        response = anonymous.post(
            "/api/auth/token/", {"username": owner.username, "password": PASSWORD}, format="json"
        )

    assert response.status_code == 200


def test_auth_me_with_a_token(api, django_assert_num_queries):
    with django_assert_num_queries(1):
        response = api.get("/api/auth/me/")

    assert response.json()["authenticated"] is True


def test_auth_me_with_a_session(owner, django_assert_num_queries):
    browser = Client()
    browser.force_login(owner)

    # the session, its user
    with django_assert_num_queries(2):
        response = browser.get("/api/auth/me/")

    assert response.json()["authenticated"] is True


def test_auth_me_anonymous(anonymous, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = anonymous.get("/api/auth/me/")

    assert response.json()["authenticated"] is False


def test_auth_logout_with_a_token(api, django_assert_num_queries):
    # token; its deletion
    with django_assert_num_queries(2):
        response = api.post("/api/auth/logout/")

    assert response.status_code == 204
    assert not Token.objects.exists()


def test_auth_logout_with_a_session(owner, django_assert_num_queries):
    browser = Client()
    browser.force_login(owner)

    # the session, its user; the session read again to delete it, and deleted
    with django_assert_num_queries(4):
        response = browser.post("/api/auth/logout/")

    assert response.status_code == 204


# ---------------------------------------------------------------- health


def test_health_live(anonymous, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = anonymous.get("/api/health/")

    assert response.status_code == 200


def test_health_ready(anonymous):
    # The database check runs on a thread of its own: counted there.
    log = QueryLog()
    log.install()
    try:
        with log.capture() as statements:
            response = anonymous.get("/api/health/ready/")
    finally:
        log.uninstall()

    assert response.json()["checks"]["database"]["ok"] is True
    assert len(statements) == 1, describe(statements)


# ---------------------------------------------------------------- rooms with members


@pytest.fixture
def private(owner: User) -> Room:
    """A private room of the owner's, with a message."""
    room = room_create(slug="secret", created_by=owner, kind="private")
    message_post(room=room, poster=poster(owner), body="the plan")
    return room


def test_rooms_list_signed_in(api, owner, private, django_assert_num_queries):
    RoomFactory.create()

    # token; the page, with the viewer's role in each room (one join, not a query per room)
    with django_assert_num_queries(2):
        response = api.get("/api/rooms/")

    assert len(response.json()["results"]) == 2


def test_rooms_detail_of_a_private_room(api, private, django_assert_num_queries):
    # token; the room, if the viewer may read it, with their role: the same one statement
    with django_assert_num_queries(2):
        response = api.get(f"/api/rooms/{private.slug}/")

    assert response.json()["role"] == "owner"


def test_room_messages_post_to_a_private_room(api, private, django_assert_num_queries):
    # As to a public room: the poster's role is read with the room's lock, in its statement.
    with django_assert_num_queries(7):
        response = api.post(f"/api/rooms/{private.slug}/messages/", {"body": "hi"}, format="json")

    assert response.status_code == 201


def test_room_messages_post_refused_to_a_stranger(private, django_assert_num_queries):
    stranger = APIClient()
    stranger.credentials(
        HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=UserFactory.create()).key}"
    )

    # token; the room, which the stranger may not read: 404 before any write
    with django_assert_num_queries(2):
        response = stranger.post(f"/api/rooms/{private.slug}/messages/", {"body": "x"}, "json")

    assert response.status_code == 404


@pytest.mark.parametrize("members", [2, 40])
def test_room_members_list(anonymous, owner, django_assert_num_queries, members):
    room = room_create(slug="square", created_by=owner)
    for _ in range(members - 1):
        room_join(slug="square", user=UserFactory.create())

    # the room; the page with each member's user (joined): then the count, when it is full
    with django_assert_num_queries(2 if members < 30 else 3):
        response = anonymous.get(f"/api/rooms/{room.slug}/members/?page_size=30")

    assert len(response.json()["results"]) == min(members, 30)


def test_room_join(api, django_assert_num_queries):
    room = room_create(slug="square", created_by=UserFactory.create())

    # token, the room; the membership looked for; savepoint, insert, release
    with django_assert_num_queries(6):
        response = api.post(f"/api/rooms/{room.slug}/join/")

    assert response.status_code == 201


def test_room_members_add(api, private, django_assert_num_queries):
    UserFactory.create(username="newcomer")

    # token, the room with the actor's role; the user; the membership looked for; savepoint,
    # insert, release
    with django_assert_num_queries(7):
        response = api.post(
            f"/api/rooms/{private.slug}/members/", {"username": "newcomer"}, format="json"
        )

    assert response.status_code == 201


def test_direct_room_opened_again(api, owner, django_assert_num_queries):
    UserFactory.create(username="friend")
    api.post("/api/direct-rooms/", {"username": "friend"}, format="json")

    # token; the other user; the pair's room
    with django_assert_num_queries(3):
        response = api.post("/api/direct-rooms/", {"username": "friend"}, format="json")

    assert response.status_code == 200


# ---------------------------------------------------------------- read state


@pytest.mark.parametrize(("rooms", "page_size"), SIZES)
def test_rooms_list_with_unread_counts(api, owner, django_assert_num_queries, rooms, page_size):
    # given: rooms of the owner's, each with messages by someone else
    writer = UserFactory.create()
    for n in range(rooms):
        room = room_create(slug=f"mine-{n}", created_by=owner)
        for _ in range(3):
            message_post(room=room, poster=poster(writer), body="unread")

    # token; the page, each room's unread counted inside it: then the count
    with django_assert_num_queries(3):
        response = api.get(f"/api/rooms/?page_size={page_size}")

    assert {room["unread"] for room in response.json()["results"]} == {3}


def test_read_state_get(api, private, django_assert_num_queries):
    # token; the room with the reader's role and read state
    with django_assert_num_queries(2):
        response = api.get(f"/api/rooms/{private.slug}/read/")

    assert response.status_code == 200


def test_read_state_put_written(api, private, fresh_gates, django_assert_num_queries):
    # token; the room with the read state; the write; the state after it (also what the
    # member's other sockets are sent)
    with django_assert_num_queries(4):
        response = api.put(f"/api/rooms/{private.slug}/read/", {"last_read_seq": 1}, "json")

    assert response.json()["last_read_seq"] == 1


def test_read_state_put_held(api, owner, django_assert_num_queries, fresh_gates):
    room = room_create(slug="busy", created_by=owner)
    writer = UserFactory.create()
    for _ in range(3):
        message_post(room=room, poster=poster(writer), body="x")
    api.put("/api/rooms/busy/read/", {"last_read_seq": 1}, "json")

    # token; the room with the read state; the unread count at the held position (no write)
    with django_assert_num_queries(3):
        response = api.put("/api/rooms/busy/read/", {"last_read_seq": 2}, "json")

    assert response.json() == {"last_read_seq": 2, "unread": 1}


@pytest.mark.parametrize("members", [2, 40])
def test_room_readers(api, owner, django_assert_num_queries, members):
    room = room_create(slug="seen", created_by=owner)
    for _ in range(members - 1):
        room_join(slug=room.slug, user=UserFactory.create())

    # token; the room; its members' positions (one more than the most, to tell it is too big)
    with django_assert_num_queries(3):
        response = api.get("/api/rooms/seen/readers/")

    assert len(response.json()["results"]) == members
