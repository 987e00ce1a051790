"""A job is its owner's: another user's job is 404 on every job endpoint, like an unknown id."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.kinds import export_path
from jobs.models import Job, JobStatus
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "/api/jobs/{id}/"),
    ("post", "/api/jobs/{id}/cancel/"),
    ("get", "/api/jobs/{id}/log/"),
    ("get", "/api/jobs/{id}/download/"),
]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def finished_export():
    """A succeeded `room.export` with its file: every endpoint has something to show."""
    owner = UserFactory.create()
    now = timezone.now()
    job = Job.objects.create(
        owner=owner,
        kind="room.export",
        params={"room": "lobby", "format": "jsonl"},
        status=JobStatus.SUCCEEDED,
        result={"format": "jsonl", "messages": 1},
        run_at=now,
        started_at=now,
        finished_at=now,
        log_lines=0,
    )
    path = export_path(job, "jsonl")
    default_storage.save(path, ContentFile(b'{"seq": 1}\n'))
    yield job
    default_storage.delete(path)


@pytest.fixture
def waiting_job():
    return Job.objects.create(
        owner=UserFactory.create(),
        kind="demo.sleep",
        params={"steps": 1},
        status=JobStatus.SCHEDULED,
        run_at=timezone.now() + timedelta(hours=1),
    )


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_the_owner_reaches_every_job_endpoint(finished_export, method, path):
    response = getattr(client_for(finished_export.owner), method)(
        path.format(id=finished_export.pk)
    )

    # cancel of a finished job is a 409 conflict: the job was found
    assert response.status_code == (409 if "cancel" in path else 200)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_another_users_job_is_404_like_an_unknown_id(finished_export, method, path):
    # given
    stranger = client_for(UserFactory.create())

    # when
    theirs = getattr(stranger, method)(path.format(id=finished_export.pk))
    unknown = getattr(stranger, method)(path.format(id=uuid.uuid4()))

    # then
    assert theirs.status_code == 404
    assert theirs.json() == unknown.json() == {"code": "not_found", "detail": "No such job."}


def test_another_user_cannot_cancel_a_waiting_job(waiting_job):
    response = client_for(UserFactory.create()).post(f"/api/jobs/{waiting_job.pk}/cancel/")

    assert response.status_code == 404
    waiting_job.refresh_from_db()
    assert waiting_job.status == JobStatus.SCHEDULED
    assert waiting_job.cancel_requested is False
    assert (
        client_for(waiting_job.owner).post(f"/api/jobs/{waiting_job.pk}/cancel/").status_code == 200
    )


def test_another_users_jobs_are_not_listed(waiting_job):
    mine = client_for(waiting_job.owner).get("/api/jobs/").json()
    theirs = client_for(UserFactory.create()).get("/api/jobs/").json()

    assert [j["id"] for j in mine["results"]] == [str(waiting_job.pk)]
    assert theirs["results"] == []
