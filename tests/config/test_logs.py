"""JSON logs (`LOG_FORMAT=json`) and request ids: a request's id names its log lines, comes
back in `X-Request-ID`, and follows a job it enqueues into the worker's log lines and into the
job's state."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from realtime.kernel import logcontext
from tests.support.processes import (
    child_env,
    http_json,
    new_user_token,
    running_stack,
    wait_until,
)


def test_a_json_line_carries_the_ids_that_are_bound():
    record = logging.LogRecord("jobs.tasks", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    before = logcontext.request_id.get()
    with logcontext.bound(request_id="r-1", job_id="j-1", user_id=None, conn_id=None):
        logcontext.ContextFilter().filter(record)

    line = json.loads(logcontext.JsonFormatter().format(record))

    assert line["message"] == "hello you"
    assert (line["level"], line["logger"]) == ("INFO", "jobs.tasks")
    assert (line["request_id"], line["job_id"]) == ("r-1", "j-1")
    assert "user_id" not in line  # unset fields are left out
    assert logcontext.request_id.get() == before  # as it was after the block


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sent", "kept"),
    [("client-id.42", True), ("", False), ("no spaces please", False), ("x" * 65, False)],
)
def test_the_response_carries_the_request_id_it_was_given_if_sane(user, sent, kept):
    client = APIClient()
    client.force_authenticate(user)

    response = client.get("/api/rooms/", HTTP_X_REQUEST_ID=sent)

    returned = response["X-Request-ID"]
    assert (returned == sent) is kept
    assert logcontext.valid_request_id(returned) == returned


@pytest.mark.django_db(transaction=True)
def test_the_request_id_follows_the_job_into_the_worker_and_its_state(tmp_path: Path, log_dir):
    env = child_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_TASK_DEFAULT_QUEUE=f"logs-{uuid.uuid4().hex[:8]}",
        LOG_FORMAT="json",
    )
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    with running_stack(env, log_dir / "logs") as stack:
        stack.wait_ready()
        token = new_user_token(stack.env, "logs")
        status, job, headers = http_json(
            f"{stack.url}/api/jobs/",
            method="POST",
            body={"kind": "demo.sleep", "params": {"steps": 1, "max_seconds": 0}},
            headers={"Authorization": f"Token {token}", "X-Request-ID": request_id},
        )
        assert status == 202, job

        def done() -> dict[str, Any] | None:
            _, state, _ = http_json(
                f"{stack.url}/api/jobs/{job['id']}/", headers={"Authorization": f"Token {token}"}
            )
            return state if state["status"] == "succeeded" else None

        state = wait_until(done, timeout=30, interval=0.2)
        worker_log = (log_dir / "logs" / "worker-stack.log").read_text()

    assert headers["X-Request-ID"] == request_id
    assert job["request_id"] == request_id
    assert state["request_id"] == request_id
    lines = [json.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    about_the_job = [line for line in lines if line.get("job_id") == job["id"]]
    assert [line["message"].rsplit(" ", 1)[-1] for line in about_the_job] == [
        "started",
        "succeeded",
    ]
    assert {line["request_id"] for line in about_the_job} == {request_id}
