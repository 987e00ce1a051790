"""`/api/jobs/` and `/api/job-kinds/`: enqueue, refusals, idempotency, visibility, list, cancel."""

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from jobs.models import Job
from jobs.services import job_claim, job_log_append
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SLEEP = {"kind": "demo.sleep", "params": {"steps": 2, "max_seconds": 0}}


@pytest.fixture
def alice() -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory.create(username="alice"))
    return client


def test_a_jobs_log_reads_by_line_number(alice):
    # given: a running job that wrote three lines
    job_id = alice.post("/api/jobs/", SLEEP, format="json").json()["id"]
    assert job_claim(job_id=job_id) is not None
    for line in ("one", "two", "three"):
        job_log_append(job_id=job_id, line=line)

    # when
    page = alice.get(f"/api/jobs/{job_id}/log/?after=1&limit=1").json()
    rest = alice.get(f"/api/jobs/{job_id}/log/?after=1").json()

    # then
    assert [(line["number"], line["line"]) for line in page["results"]] == [(2, "two")]
    assert [line["number"] for line in rest["results"]] == [2, 3]
    assert page["log_lines"] == rest["log_lines"] == 3
    assert alice.get(f"/api/jobs/{job_id}/log/?limit=501").status_code == 400


def test_enqueue_with_a_countdown_answers_202_with_where_to_look(alice):
    # when
    response = alice.post("/api/jobs/", {**SLEEP, "countdown": 30}, format="json")

    # then
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "scheduled"
    assert body["params"] == {"steps": 2, "max_seconds": 0.0}
    assert response["Location"] == body["status_url"]
    assert body["status_url"].endswith(f"/api/jobs/{body['id']}/")
    assert body["channel"] == f"job:{body['id']}"
    job = Job.objects.get(pk=body["id"])
    assert job.dispatched_at is not None
    assert job.run_at - job.created_at == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"kind": "os.system", "params": {}}, "unknown_kind"),
        ({"kind": "demo.sleep", "params": {"steps": 0}}, "invalid_params"),
        ({"kind": "demo.sleep", "params": {"steps": "many"}}, "invalid_params"),
        ({"kind": "demo.sleep", "params": {"max_seconds": 11}}, "invalid_params"),
        ({"kind": "demo.sleep", "params": {"surprise": 1}}, "invalid_params"),
        ({**SLEEP, "countdown": -1}, "invalid"),
        ({**SLEEP, "countdown": "soon"}, "invalid"),
        ({**SLEEP, "countdown": 10**9}, "invalid_schedule"),
        ({**SLEEP, "countdown": 5, "eta": "2030-01-01T00:00:00Z"}, "invalid_schedule"),
        ({**SLEEP, "eta": "2001-01-01T00:00:00Z"}, "invalid_schedule"),
    ],
)
def test_bad_enqueues_are_400_and_leave_no_job(alice, payload, code):
    response = alice.post("/api/jobs/", payload, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not Job.objects.exists()


def test_countdown_limit_is_named_in_the_error(alice, settings):
    response = alice.post("/api/jobs/", {**SLEEP, "countdown": 10**9}, format="json")

    assert str(settings.JOBS_MAX_COUNTDOWN) in response.json()["detail"]


def test_idempotency_key_returns_the_same_job(alice):
    first = alice.post("/api/jobs/", SLEEP, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    retry = alice.post("/api/jobs/", SLEEP, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, retry.status_code) == (202, 202)
    assert first.json()["id"] == retry.json()["id"]
    assert Job.objects.count() == 1


def test_an_idempotency_key_longer_than_128_is_refused(alice):
    response = alice.post("/api/jobs/", SLEEP, format="json", HTTP_IDEMPOTENCY_KEY="k" * 129)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_params"
    assert not Job.objects.exists()


def test_another_users_job_is_as_unknown_as_a_made_up_id(alice):
    job_id = alice.post("/api/jobs/", SLEEP, format="json").json()["id"]
    bob = APIClient()
    bob.force_authenticate(UserFactory.create(username="bob"))

    for path in (f"/api/jobs/{job_id}/", "/api/jobs/3b241101-e2bb-4255-8caf-4136c566a962/",
                 "/api/jobs/not-a-uuid/", f"/api/jobs/{job_id}/log/"):  # fmt: skip
        response = bob.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"
    assert bob.post(f"/api/jobs/{job_id}/cancel/").status_code == 404
    assert bob.get("/api/jobs/").json()["count"] == 0


def test_jobs_need_a_user():
    assert APIClient().post("/api/jobs/", SLEEP, format="json").status_code == 401
    assert APIClient().get("/api/job-kinds/").status_code == 401


def test_job_kinds_list_their_params_schema(alice):
    kinds = {k["name"]: k for k in alice.get("/api/job-kinds/").json()}

    schema = kinds["demo.sleep"]["params_schema"]
    assert schema["properties"]["steps"]["maximum"] == 100
    assert schema["additionalProperties"] is False


def test_my_jobs_filter_by_status(alice):
    alice.post("/api/jobs/", {**SLEEP, "countdown": 60}, format="json")
    alice.post("/api/jobs/", SLEEP, format="json")

    assert alice.get("/api/jobs/?status=scheduled").json()["count"] == 1
    assert alice.get("/api/jobs/").json()["count"] == 2
    assert alice.get("/api/jobs/?status=bogus").status_code == 400


def test_cancelling_a_waiting_job_means_it_never_starts_and_twice_is_plain(alice):
    job_id = alice.post("/api/jobs/", {**SLEEP, "countdown": 60}, format="json").json()["id"]

    cancelled = alice.post(f"/api/jobs/{job_id}/cancel/")
    again = alice.post(f"/api/jobs/{job_id}/cancel/")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert again.status_code == 409
    assert again.json()["code"] == "not_cancellable"
    assert job_claim(job_id=job_id) is None  # a delivery arriving later does nothing
