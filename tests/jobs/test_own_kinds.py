"""A project's own job kinds (tests/jobkinds) on a real worker: retries with their history, a
retry asked for by the owner, cancelling a job that never checks, and time limits.

Run on Redis and again on RabbitMQ as the broker (`make pytest`)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.models import Job
from tests.factories import UserFactory
from tests.support.jobs import finished
from tests.support.processes import wait_until
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def enqueue(api: APIClient, kind: str, **params: Any) -> dict[str, Any]:
    response = api.post("/api/jobs/", {"kind": kind, "params": params}, format="json")
    assert response.status_code == 202, response.json()
    body: dict[str, Any] = response.json()
    return body


def attempts(api: APIClient, job_id: str) -> list[tuple[int, str, str | None]]:
    body = api.get(f"/api/jobs/{job_id}/attempts/").json()
    return [(a["number"], a["status"], (a["error"] or {}).get("type")) for a in body]


def test_the_kinds_of_a_projects_own_app_are_listed_with_their_policies(api):
    kinds = {kind["name"]: kind for kind in api.get("/api/job-kinds/").json()}

    flaky = kinds["tests.flaky"]
    assert flaky["title"] == "Fail the first attempts, then succeed"
    assert flaky["params_schema"]["properties"]["fail_times"]["maximum"] == 20
    assert flaky["result_schema"]["properties"]["attempt"]["type"] == "integer"
    assert flaky["retry"] == {
        "attempts": 3,
        "backoff": 0.3,
        "factor": 2.0,
        "max_backoff": 600.0,
        "jitter": 0.5,
        "on": ["ConnectionError"],
    }
    assert (kinds["tests.overtime"]["soft_time_limit"], kinds["tests.overtime"]["time_limit"]) == (
        1,
        2.5,
    )
    assert kinds["tests.stuck"]["cancel_grace"] == 1
    assert kinds["demo.sleep"]["retry"]["attempts"] == 1  # the default: no retry


def test_a_failing_attempt_is_retried_after_its_backoff_and_each_attempt_is_recorded(api, worker):
    body = enqueue(api, "tests.flaky", fail_times=2)

    job = finished(body["id"])

    assert job.status == "succeeded", job.error
    assert job.result == {"attempt": 3}  # the kind's result model, dumped
    assert (job.attempts, job.max_attempts, job.next_attempt_at) == (3, 3, None)
    assert attempts(api, body["id"]) == [
        (1, "failed", "ConnectionError"),
        (2, "failed", "ConnectionError"),
        (3, "succeeded", None),
    ]
    history = api.get(f"/api/jobs/{body['id']}/attempts/").json()
    # The second attempt waited its backoff: 0.3 s less up to half of it, then 0.6 s so.
    assert _seconds(history[0]["finished_at"], history[1]["started_at"]) >= 0.15
    assert _seconds(history[1]["finished_at"], history[2]["started_at"]) >= 0.3
    log = api.get(f"/api/jobs/{body['id']}/log/").json()["results"]
    assert [line["line"] for line in log] == ["attempt 1", "attempt 2", "attempt 3"]


def test_after_its_last_attempt_a_job_fails_and_its_owner_can_run_it_again(api, worker):
    body = enqueue(api, "tests.flaky", fail_times=4)
    failed = finished(body["id"])
    first_round = attempts(api, body["id"])

    retried = api.post(f"/api/jobs/{body['id']}/retry/")
    again = finished(body["id"])

    assert (failed.status, failed.attempts) == ("failed", 3)
    assert failed.error == {"type": "ConnectionError", "message": "attempt 3 failed"}
    assert first_round == [(n, "failed", "ConnectionError") for n in (1, 2, 3)]
    assert retried.status_code == 202
    assert retried.json()["id"] == body["id"]  # the same job
    assert retried.json()["status"] == "queued"
    assert retried.json()["max_attempts"] == 6
    assert again.status == "succeeded"
    assert again.result == {"attempt": 5}
    assert attempts(api, body["id"]) == [
        *first_round,
        (4, "failed", "ConnectionError"),
        (5, "succeeded", None),
    ]


def test_an_error_the_policy_does_not_name_fails_at_once(api, worker):
    body = enqueue(api, "tests.flaky", fail_times=1, error="ValueError")

    job = finished(body["id"])

    assert (job.status, job.attempts) == ("failed", 1)
    assert job.error == {"type": "ValueError", "message": "attempt 1 failed"}
    assert attempts(api, body["id"]) == [(1, "failed", "ValueError")]


def test_only_a_failed_job_of_ones_own_can_be_retried(api, owner, worker):
    done = enqueue(api, "tests.flaky", fail_times=0)
    finished(done["id"])
    stranger = APIClient()
    stranger.force_authenticate(UserFactory.create(username="stranger"))
    staff = APIClient()
    staff.force_authenticate(UserFactory.create(username="admin", is_staff=True))
    failed = enqueue(api, "tests.flaky", fail_times=9, error="ValueError")
    finished(failed["id"])

    not_failed = api.post(f"/api/jobs/{done['id']}/retry/")
    someone_elses = stranger.post(f"/api/jobs/{failed['id']}/retry/")
    staff_not_owner = staff.post(f"/api/jobs/{failed['id']}/retry/")
    made_up = api.post("/api/jobs/3b241101-e2bb-4255-8caf-4136c566a962/retry/")

    assert (not_failed.status_code, not_failed.json()["code"]) == (409, "not_retryable")
    assert (someone_elses.status_code, someone_elses.json()["code"]) == (404, "not_found")
    assert someone_elses.json() == made_up.json()
    assert (staff_not_owner.status_code, staff_not_owner.json()["code"]) == (403, "not_job_owner")
    assert Job.objects.get(pk=failed["id"]).status == "failed"  # none of them ran it


@pytest.mark.parametrize(
    ("how", "stubborn"),
    [("sleep", False), ("busy", False), ("busy", True)],
    ids=["blocking-sleep", "busy-loop", "busy-loop-ignoring-sigterm"],
)
def test_cancelling_a_job_that_never_checks_ends_it_within_its_grace(api, worker, how, stubborn):
    # given: a job that never calls its reporter again (grace 1 s; JOBS_KILL_AFTER 2 s)
    body = enqueue(api, "tests.stuck", how=how, seconds=120, stubborn=stubborn)
    wait_until(lambda: Job.objects.get(pk=body["id"]).progress_message != "", timeout=20)

    # when
    asked = time.monotonic()
    response = api.post(f"/api/jobs/{body['id']}/cancel/")
    job = finished(body["id"], timeout=15)
    took = time.monotonic() - asked

    # then
    # `cancelling` (the socket test sees it pushed), unless its grace was over before the reply
    assert response.json()["status"] in ("cancelling", "cancelled")
    assert job.status == "cancelled"
    assert took < 1 + (2 if stubborn else 0) + 4, took  # grace (+ kill after) + a few seconds
    assert attempts(api, body["id"]) == [(1, "cancelled", None)]


def test_a_job_past_its_soft_time_limit_gets_an_error_it_may_handle(api, worker):
    body = enqueue(api, "tests.overtime", seconds=30)

    job = finished(body["id"], timeout=20)

    assert job.status == "failed"
    assert job.error == {"type": "TimeLimitExceeded", "message": "It ran past its soft time limit."}
    log = api.get(f"/api/jobs/{body['id']}/log/").json()["results"]
    assert [line["line"] for line in log] == ["past the soft time limit"]


def test_a_job_past_its_hard_time_limit_is_stopped(api, worker):
    started = time.monotonic()
    body = enqueue(api, "tests.overtime", seconds=30, ignore_soft_limit=True)

    job = finished(body["id"], timeout=20)

    assert job.status == "failed"
    assert job.error == {
        "type": "TimeLimitExceeded",
        "message": "It ran for more than 2.5 seconds.",
    }
    assert time.monotonic() - started < 2.5 + 5


async def test_retrying_and_cancelling_are_pushed_to_the_jobs_subscribers(
    live_server_url, worker, owner
):
    token = await database_sync_to_async(lambda: str(Token.objects.create(user=owner).key))()
    client = await WsClient.open(
        live_server_url, additional_headers={"Authorization": f"Token {token}"}
    )
    await client.request(type="subscribe", channel="jobs:mine")
    api = APIClient()
    api.force_authenticate(owner)

    flaky = await database_sync_to_async(enqueue)(api, "tests.flaky", fail_times=1)
    await client.expect(
        lambda f: (
            f["type"] == "job.update"
            and f["job"]["id"] == flaky["id"]
            and f["job"]["status"] == "succeeded"
        ),
        timeout=30,
    )
    stuck = await database_sync_to_async(enqueue)(api, "tests.stuck", seconds=120)
    await client.expect(
        lambda f: f["type"] == "job.update" and f["job"]["progress"]["message"] != "", timeout=20
    )
    await database_sync_to_async(api.post)(f"/api/jobs/{stuck['id']}/cancel/")
    await client.expect(
        lambda f: (
            f["type"] == "job.update"
            and f["job"]["id"] == stuck["id"]
            and f["job"]["status"] == "cancelled"
        ),
        timeout=15,
    )

    def statuses(job_id: str) -> list[str]:
        updates = [f["job"] for f in client.frames if f["type"] == "job.update"]
        seen = [u["status"] for u in updates if u["id"] == job_id]
        return [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]

    retrying = next(
        f["job"]
        for f in client.frames
        if f["type"] == "job.update" and f["job"]["status"] == "retrying"
    )
    # The enqueue's own update (`queued`, seq 1) comes from this process, the worker's from
    # another: when the worker's comes first the feed drops the older one.
    assert statuses(flaky["id"])[-4:] == ["running", "retrying", "running", "succeeded"]
    assert retrying["next_attempt_at"] is not None
    assert retrying["error"] == {"type": "ConnectionError", "message": "attempt 1 failed"}
    assert statuses(stuck["id"])[-3:] == ["running", "cancelling", "cancelled"]
    await client.close()


def _seconds(earlier: str, later: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()
