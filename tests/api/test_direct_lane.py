"""The direct lane (`api/direct.py`): which GETs take it, and that it answers them as DRF does.

Each case is asked twice: once as it comes, and once with the lane shut, so that DRF's own
request cycle answers. Status, body and headers must be the same, refusals included.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.views import APIView

from api import direct
from chat.models import Room
from chat.services import message_post
from jobs.services import job_enqueue
from tests.factories import PASSWORD, RoomFactory, UserFactory, poster

pytestmark = pytest.mark.django_db

SLEEP: dict[str, Any] = {"kind": "demo.sleep", "params": {"steps": 1, "max_seconds": 0}}
# Headers that differ between two answers for reasons of their own (none today).
COMPARED_HEADERS = ("Content-Type", "Allow", "Vary", "WWW-Authenticate", "Retry-After")


@pytest.fixture
def owner() -> User:
    return UserFactory.create()


@pytest.fixture
def room(owner: User) -> Room:
    room = RoomFactory.create(slug="lobby")
    for n in range(3):
        message_post(room=room, poster=poster(owner), body=f"hello {n}")
    return room


@pytest.fixture
def job_id(owner: User) -> str:
    job, _ = job_enqueue(owner=owner, countdown=3600, **SLEEP)
    return str(job.pk)


@pytest.fixture
def drf_initial_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths whose request went through DRF's `initial` (its negotiation and auth)."""
    calls: list[str] = []
    initial = APIView.initial

    def counted(self: APIView, request: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(request.path)
        initial(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initial", counted)
    return calls


def signed(how: str, owner: User) -> Client:
    client = Client()
    if how == "session":
        assert client.login(username=owner.username, password=PASSWORD)
    elif how == "token":
        key = Token.objects.create(user=owner).key
        client.defaults["HTTP_AUTHORIZATION"] = f"Token {key}"
    return client


def answer(client: Client, path: str) -> tuple[int, Any, dict[str, str]]:
    response = client.get(path)
    kept = {name: response[name] for name in COMPARED_HEADERS if response.has_header(name)}
    return response.status_code, response.json(), kept


def paths(job_id: str) -> list[str]:
    return [
        "/api/rooms/",
        "/api/rooms/?page_size=1&page=2",
        "/api/rooms/?page=9",
        "/api/rooms/?page=x",
        "/api/rooms/lobby/",
        "/api/rooms/nowhere/",
        "/api/rooms/lobby/messages/?limit=2",
        "/api/rooms/lobby/messages/?after=1",
        "/api/rooms/lobby/messages/?limit=0",
        "/api/rooms/nowhere/messages/",
        "/api/jobs/",
        "/api/jobs/?status=scheduled",
        "/api/jobs/?status=nonsense",
        f"/api/jobs/{job_id}/",
        f"/api/jobs/{uuid.uuid4()}/",
        "/api/jobs/not-a-uuid/",
    ]


@pytest.mark.parametrize("how", ["session", "token", "anonymous"])
def test_the_lane_answers_every_read_as_drf_does(
    how: str, owner: User, room: Room, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a room with messages, a job, and a client signed in (or not)
    client = signed(how, owner)
    other = UserFactory.create()
    someone_elses, _ = job_enqueue(owner=other, countdown=3600, **SLEEP)
    asked = [*paths(job_id), f"/api/jobs/{someone_elses.pk}/"]

    # when: each is read through the lane, then with the lane shut
    lane = {path: answer(client, path) for path in asked}
    monkeypatch.setattr(direct, "_plain", lambda request: False)
    drf = {path: answer(client, path) for path in asked}

    # then: the same status, body and headers, whether a 200 or a refusal
    for path in asked:
        assert lane[path] == drf[path], path
    assert lane["/api/rooms/lobby/"][0] == 200
    assert lane["/api/rooms/nowhere/"][0] == 404
    assert lane[f"/api/jobs/{job_id}/"][0] == (401 if how == "anonymous" else 200)


def test_plain_reads_take_the_lane_and_the_rest_take_drf(
    owner: User, room: Room, job_id: str, drf_initial_calls: list[str]
) -> None:
    # given: a signed-in SPA's session, and a token
    client = signed("session", owner)
    token = Token.objects.create(user=owner).key

    # when: plain reads, as an SPA and scripts send them
    for accept in ("application/json", "*/*", "application/json, text/plain, */*", ""):
        assert client.get("/api/rooms/lobby/", HTTP_ACCEPT=accept).status_code == 200
    assert client.get(f"/api/jobs/{job_id}/").status_code == 200
    assert client.get("/api/rooms/nowhere/").status_code == 404
    assert Client().get("/api/jobs/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200

    # then: DRF's request cycle ran for none of them
    assert drf_initial_calls == []

    # when: what the lane leaves to DRF
    others = [
        client.get("/api/rooms/lobby/", HTTP_ACCEPT="text/html"),  # DRF: 406
        client.get("/api/rooms/lobby/", HTTP_ACCEPT="application/json; indent=2"),
        client.get("/api/rooms/lobby/", HTTP_ACCEPT="text/html;q=0.9, */*;q=0.8"),
        client.get("/api/rooms/lobby/?format=json"),
        Client().get("/api/jobs/"),  # anonymous: the permission class refuses (401)
        Client().get("/api/jobs/", HTTP_AUTHORIZATION="Token not-a-token"),  # 401
        Client().get("/api/rooms/", HTTP_AUTHORIZATION="Bearer something"),  # not a token
    ]

    # then: each went through DRF, which answered it as always
    assert [response.status_code for response in others] == [406, 200, 200, 200, 401, 401, 200]
    assert len(drf_initial_calls) == len(others)
    assert others[1].content.startswith(b"{\n")  # DRF's renderer indented it
