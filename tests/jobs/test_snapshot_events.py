"""Snapshot, then events: a job's state (and its owner's list) plus its events is a fresh read.

A client reads a job over REST (`GET /api/jobs/{id}/` and its log), or the list of its jobs,
then applies the `job.update` and `job.log` events it hears, by `seq` and line number. Each
step of a job's life runs in turn (enqueue, claim, progress, log, finish or cancel: what the
API and a worker do); its events go out after commit through the kernel's publisher to the
real channel layer, where a member of the job's and the owner's groups receives them. Applied
to what was read before the step, they must give what is read after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from jobs.models import Job
from jobs.services import (
    job_claim,
    job_enqueue,
    job_fail,
    job_log_append,
    job_mark_cancelled,
    job_progress,
    job_succeed,
)
from realtime.kernel.names import job_group, owner_group
from tests.factories import UserFactory
from tests.support.layer import Event, LayerListener

pytestmark = pytest.mark.django_db

State = dict[str, Any]
SLEEP: dict[str, Any] = {"kind": "demo.sleep", "params": {"steps": 3, "max_seconds": 0}}


def apply_job_events(state: State, events: list[Event]) -> State:
    """The client's reducer for one job: `{"job": <state>, "log": [(number, line), ...]}`.

    An update replaces the state when its `seq` is newer; a log line is added when its number
    is past the last one known, and counts in `log_lines` (a line is not a change of `seq`).
    """
    job, log = dict(state["job"]), list(state["log"])
    group = job_group(job["id"])
    for event in events:
        if event["group"] != group:
            continue
        last_line = log[-1][0] if log else 0
        if event["type"] == "job.update" and event["seq"] > job["seq"]:
            update = event["frame"]["job"]
            job = {**update, "log_lines": max(update["log_lines"], last_line)}
        elif event["type"] == "job.log" and event["frame"]["number"] > last_line:
            number, line = event["frame"]["number"], event["frame"]["line"]
            log.append((number, line))
            job["log_lines"] = max(job["log_lines"], number)
    return {"job": job, "log": log}


def apply_list_events(jobs: list[State], events: list[Event], owner_id: int) -> list[State]:
    """The client's reducer for the list of its jobs: newest first, each at its latest `seq`."""
    by_id = {job["id"]: job for job in jobs}
    for event in events:
        if event["group"] != owner_group(owner_id) or event["type"] != "job.update":
            continue
        update = event["frame"]["job"]
        known = by_id.get(update["id"])
        if known is None or update["seq"] > known["seq"]:
            by_id[update["id"]] = update
    return sorted(by_id.values(), key=lambda job: job["created_at"], reverse=True)


@pytest.fixture
def owner() -> User:
    return UserFactory.create()


@pytest.fixture
def listener(owner: User) -> Iterator[LayerListener]:
    """A member of the owner's group (`jobs:mine`); tests add the job's group."""
    member = LayerListener()
    member.join(owner_group(owner.pk))
    yield member
    member.close()


def read_job(api: APIClient, job_id: str) -> State:
    job = api.get(f"/api/jobs/{job_id}/").json()
    log = api.get(f"/api/jobs/{job_id}/log/?limit=500").json()["results"]
    return {"job": job, "log": [(line["number"], line["line"]) for line in log]}


def read_list(api: APIClient) -> list[State]:
    results: list[State] = api.get("/api/jobs/").json()["results"]
    return results


def heard_up_to(before: State, after: State) -> Callable[[list[Event]], bool]:
    """Whether the events include what changed from `before` to `after`: the job's update to
    the new `seq`, and its new last log line."""
    group = job_group(after["job"]["id"])
    seq = after["job"]["seq"] if after["job"]["seq"] > before["job"]["seq"] else 0
    line = len(after["log"]) if len(after["log"]) > len(before["log"]) else 0

    def done(events: list[Event]) -> bool:
        mine = [event for event in events if event["group"] == group]
        updates = [event["seq"] for event in mine if event["type"] == "job.update"]
        numbers = [event["frame"]["number"] for event in mine if event["type"] == "job.log"]
        return max(updates, default=0) >= seq and max(numbers, default=0) >= line

    return done


def run_steps(
    api: APIClient,
    listener: LayerListener,
    capture: Any,
    job_id: str,
    steps: list[tuple[str, Callable[[], object]]],
) -> State:
    """Each step's events applied to the state read before it give the state read after it."""
    for name, step in steps:
        # given: what a client holds
        before, heard = read_job(api, job_id), len(listener.received())

        # when: the step commits, and its events go out
        with capture(execute=True):
            step()
        after = read_job(api, job_id)
        events = listener.wait_for(heard_up_to(before, after), since=heard)

        # then
        assert apply_job_events(before, events) == after, name
    return after


def list_heard_up_to(
    before: list[State], after: list[State], owner_id: int
) -> Callable[[list[Event]], bool]:
    """Whether the owner's group has carried each job's update from `before` to `after`.

    A job's update goes to its own group, then to its owner's: hearing the first does not
    mean the second has arrived.
    """
    group = owner_group(owner_id)
    known = {job["id"]: job["seq"] for job in before}
    changed = {job["id"]: job["seq"] for job in after if job["seq"] > known.get(job["id"], 0)}

    def done(events: list[Event]) -> bool:
        latest: dict[str, int] = {}
        for event in events:
            if event["group"] == group and event["type"] == "job.update":
                latest[event["job"]] = max(latest.get(event["job"], 0), event["seq"])
        return all(latest.get(job_id, 0) >= seq for job_id, seq in changed.items())

    return done


def test_a_job_that_runs_to_success(api, owner, listener, django_capture_on_commit_callbacks):
    # given: the owner's list as a client read it, then an enqueue over REST
    jobs_before, heard = read_list(api), len(listener.received())
    with django_capture_on_commit_callbacks(execute=True):
        job_id = api.post("/api/jobs/", {**SLEEP, "countdown": 60}, format="json").json()["id"]
    listener.join(job_group(job_id))
    jobs_after = read_list(api)
    events = listener.wait_for(lambda got: any(e["job"] == job_id for e in got), since=heard)
    assert apply_list_events(jobs_before, events, owner.pk) == jobs_after

    # when / then: what a worker does, step by step
    def log(*lines: str) -> Callable[[], object]:
        return lambda: [job_log_append(job_id=job_id, line=line) for line in lines]

    def progress(current: int, total: int) -> Callable[[], object]:
        message = f"{current}/{total}"
        return lambda: job_progress(job_id=job_id, current=current, total=total, message=message)

    final = run_steps(
        api,
        listener,
        django_capture_on_commit_callbacks,
        job_id,
        [
            ("claimed", lambda: job_claim(job_id=job_id)),
            ("a log line", log("Going to sleep")),
            ("progress", progress(1, 3)),
            ("two log lines", log("l2", "l3")),
            ("progress", progress(3, 3)),
            ("a last line", log("done")),
            ("succeeded", lambda: job_succeed(job_id=job_id, result={"steps": 3})),
            ("a late report changes nothing", progress(9, 9)),
        ],
    )
    assert final["job"]["status"] == "succeeded"
    assert final["job"]["log_lines"] == 4

    # and the owner's list, from what was read at the start, follows all of it
    jobs_after = read_list(api)
    events = listener.wait_for(list_heard_up_to(jobs_before, jobs_after, owner.pk))
    assert apply_list_events(jobs_before, events, owner.pk) == jobs_after


def test_a_running_job_cancelled_then_stopped(
    api, owner, listener, django_capture_on_commit_callbacks
):
    job_id = str(job_enqueue(owner=owner, **SLEEP)[0].pk)
    listener.join(job_group(job_id))

    final = run_steps(
        api,
        listener,
        django_capture_on_commit_callbacks,
        job_id,
        [
            ("claimed", lambda: job_claim(job_id=job_id)),
            ("a log line", lambda: job_log_append(job_id=job_id, line="working")),
            ("cancel requested over REST", lambda: api.post(f"/api/jobs/{job_id}/cancel/")),
            ("its reporter stops it", lambda: job_mark_cancelled(job_id=job_id)),
        ],
    )

    assert (final["job"]["status"], final["job"]["cancel_requested"]) == ("cancelled", True)


def test_a_waiting_job_cancelled_and_a_failing_one(
    api, owner, listener, django_capture_on_commit_callbacks
):
    waiting, _ = job_enqueue(owner=owner, **SLEEP, countdown=60)
    failing, _ = job_enqueue(owner=owner, **SLEEP)
    jobs_before = read_list(api)
    for job in (waiting, failing):
        listener.join(job_group(job.pk))
    heard = len(listener.received())

    cancelled = run_steps(
        api,
        listener,
        django_capture_on_commit_callbacks,
        str(waiting.pk),
        [("cancelled before it ran", lambda: api.post(f"/api/jobs/{waiting.pk}/cancel/"))],
    )
    failed = run_steps(
        api,
        listener,
        django_capture_on_commit_callbacks,
        str(failing.pk),
        [
            ("claimed", lambda: job_claim(job_id=str(failing.pk))),
            ("failed", lambda: job_fail(job_id=failing.pk, error_type="ValueError", message="no")),
        ],
    )

    assert cancelled["job"]["status"] == "cancelled"
    assert failed["job"]["error"] == {"type": "ValueError", "message": "no"}
    jobs_after = read_list(api)
    events = listener.wait_for(list_heard_up_to(jobs_before, jobs_after, owner.pk), since=heard)
    assert apply_list_events(jobs_before, events, owner.pk) == jobs_after
    assert Job.objects.filter(owner=owner).count() == 2
