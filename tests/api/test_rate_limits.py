"""Rate limits on enqueue and on posting, and the cap on unfinished jobs, under concurrency.

The concurrent tests fire every request at once (a barrier) at two live Daphne processes on
one database, then count the rows: the limits must hold across processes, not just within
one. They run on SQLite and, when it answers, on PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat.models import Message
from jobs import services as job_services
from jobs.models import Job
from tests.factories import RoomFactory, UserFactory
from tests.support.databases import SqlRunner, postgres_database, sql_runner
from tests.support.processes import child_env, daphne, http_json, manage_shell

LATER = {"kind": "demo.sleep", "params": {"steps": 1}, "countdown": 3600}


pytestmark = pytest.mark.usefixtures("fresh_rate_counters")


def signed_in(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def assert_throttled(response: Any, code: str, longest: int) -> None:
    assert response.status_code == 429
    assert response.json()["code"] == code
    assert set(response.json()) == {"code", "detail"}
    assert 1 <= int(response["Retry-After"]) <= longest


# ------------------------------------------------------------------ one process


@pytest.mark.django_db
def test_enqueue_is_rate_limited_per_user(settings):
    # given
    settings.JOBS_ENQUEUE_RATE = "3/hour"
    alice, bob = signed_in(UserFactory.create()), signed_in(UserFactory.create())

    # when
    statuses = [alice.post("/api/jobs/", LATER, format="json").status_code for _ in range(3)]
    refused = alice.post("/api/jobs/", LATER, format="json")

    # then
    assert statuses == [202, 202, 202]
    assert_throttled(refused, "rate_limited", 3600)
    assert Job.objects.count() == 3
    assert bob.post("/api/jobs/", LATER, format="json").status_code == 202
    assert alice.get("/api/jobs/").status_code == 200  # reading is not limited


@pytest.mark.django_db
def test_posting_is_rate_limited_per_user(settings):
    settings.CHAT_POST_RATE = "2/min"
    room = RoomFactory.create()
    alice, bob = signed_in(UserFactory.create()), signed_in(UserFactory.create())
    url = f"/api/rooms/{room.slug}/messages/"

    statuses = [alice.post(url, {"body": "hi"}, format="json").status_code for _ in range(2)]
    refused = alice.post(url, {"body": "hi"}, format="json")

    assert statuses == [201, 201]
    assert_throttled(refused, "rate_limited", 60)
    assert bob.post(url, {"body": "hi"}, format="json").status_code == 201
    assert Message.objects.count() == 3


@pytest.mark.django_db
def test_the_window_slides_so_a_period_boundary_lets_no_second_burst_through(settings, monkeypatch):
    # given: 10 a minute, and a clock the test moves (a minute starts at `start`)
    settings.JOBS_ENQUEUE_RATE = "10/min"
    start = 60.0 * 29_000_000
    now = [start - 1.0]
    monkeypatch.setattr(job_services.ENQUEUE_LIMIT, "clock", lambda: now[0])
    alice = signed_in(UserFactory.create())

    def enqueue(count: int) -> list[int]:
        return [alice.post("/api/jobs/", LATER, format="json").status_code for _ in range(count)]

    # when: the whole rate in the last second of one minute, then more just after it
    assert enqueue(10) == [202] * 10
    now[0] = start + 0.5
    after_boundary = enqueue(2)

    # then: aligned windows would take 10 more at once; the sliding one takes one
    assert after_boundary == [202, 429]
    refused = alice.post("/api/jobs/", LATER, format="json")
    assert_throttled(refused, "rate_limited", 60)

    # when: the client waits as told, then half the previous minute has faded out
    now[0] = start + 0.5 + int(refused["Retry-After"])
    assert enqueue(1) == [202]
    now[0] = start + 30.0
    # then: 10 - 5 still weighed from the previous minute - 2 taken = 3 more
    assert enqueue(4) == [202, 202, 202, 429]
    assert Job.objects.count() == 15


@pytest.mark.django_db
def test_anonymous_posting_is_limited_per_address_whatever_x_forwarded_for_says(settings):
    # given
    settings.CHAT_POST_RATE = "2/hour"
    settings.SWITCHBOARD_ANONYMOUS_POSTING = True
    room = RoomFactory.create()
    url = f"/api/rooms/{room.slug}/messages/"
    here, there = f"10.9.{uuid.uuid4().int % 250}.1", f"10.8.{uuid.uuid4().int % 250}.2"

    def post(address: str, forwarded_for: str | None = None) -> Any:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        return APIClient().post(
            url, {"body": "hi"}, format="json", REMOTE_ADDR=address, headers=headers
        )

    # when
    accepted = [post(here).status_code for _ in range(2)]
    refused = post(here)
    spoofed = post(here, forwarded_for="203.0.113.7")

    # then
    assert accepted == [201, 201]
    assert_throttled(refused, "rate_limited", 3600)
    assert_throttled(spoofed, "rate_limited", 3600)
    assert post(there).status_code == 201


@pytest.mark.django_db
def test_unfinished_jobs_are_capped_per_user(settings):
    # given
    settings.JOBS_MAX_ACTIVE_PER_USER = 2
    alice = signed_in(UserFactory.create())
    first = alice.post("/api/jobs/", LATER, format="json", HTTP_IDEMPOTENCY_KEY="first")
    alice.post("/api/jobs/", LATER, format="json")

    # when
    refused = alice.post("/api/jobs/", LATER, format="json")
    retried = alice.post("/api/jobs/", LATER, format="json", HTTP_IDEMPOTENCY_KEY="first")

    # then: refused with the error shape; a retry of a job already made is not a new job
    assert_throttled(refused, "too_many_active_jobs", 60)
    assert retried.status_code == 202
    assert retried.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 2
    assert (
        signed_in(UserFactory.create()).post("/api/jobs/", LATER, format="json").status_code == 202
    )

    # a finished (here: cancelled) job frees its place
    assert alice.post(f"/api/jobs/{first.json()['id']}/cancel/").status_code == 200
    assert alice.post("/api/jobs/", LATER, format="json").status_code == 202


@pytest.mark.django_db(transaction=True)
def test_a_retry_of_a_job_the_broker_refused_counts_against_the_cap(
    settings, shared_env: dict[str, str], log_dir: Path
):
    # given: a job the broker refused (sent through a server whose broker does not answer),
    # which is failed and so not counted; then the user fills the cap with other jobs
    settings.JOBS_MAX_ACTIVE_PER_USER = 2
    owner = UserFactory.create()
    alice = signed_in(owner)
    soon = {"kind": "demo.sleep", "params": {"steps": 1}, "countdown": 60}
    token = Token.objects.create(user=owner).key
    server, url = daphne(dict(shared_env, CELERY_BROKER_URL="redis://127.0.0.1:1/0"), log_dir)
    try:
        status, lost, _ = http_json(
            f"{url}/api/jobs/",
            method="POST",
            body=soon,
            headers={"Authorization": f"Token {token}", "Idempotency-Key": "retry-me"},
            timeout=30,
        )
    finally:
        server.stop()
    assert status == 503, lost
    assert lost["code"] == "broker_unavailable"
    (refused_job,) = Job.objects.filter(owner=owner)
    assert refused_job.status == "failed"
    later = [alice.post("/api/jobs/", LATER, format="json") for _ in range(2)]
    assert [response.status_code for response in later] == [202, 202]

    # when: the refused request is retried with its key
    retried = alice.post("/api/jobs/", soon, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")

    # then: the retry would be a third unfinished job, so it is refused like a new one
    assert_throttled(retried, "too_many_active_jobs", 60)
    assert Job.objects.get(pk=refused_job.pk).status == "failed"
    assert Job.objects.filter(owner=owner, status__in=("scheduled", "queued")).count() == 2

    # when: a place is free again
    assert alice.post(f"/api/jobs/{later[0].json()['id']}/cancel/").status_code == 200
    retried = alice.post("/api/jobs/", soon, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")
    replayed = alice.post("/api/jobs/", soon, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")

    # then: the retry queues that same job, and a replay of it returns it again
    assert retried.status_code == 202, retried.json()
    assert retried.json()["id"] == str(refused_job.pk)
    assert retried.json()["status"] == "scheduled"
    assert replayed.status_code == 202
    assert replayed.json()["id"] == str(refused_job.pk)
    assert Job.objects.filter(owner=owner).count() == 3


@pytest.mark.django_db
def test_the_posting_rate_holds_when_redis_is_away(settings):
    # given: the cache points at a port nothing listens on
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.CHAT_POST_RATE = "1/hour"
    room = RoomFactory.create()
    alice = signed_in(UserFactory.create())

    # when
    statuses = [
        alice.post(f"/api/rooms/{room.slug}/messages/", {"body": "hi"}, format="json").status_code
        for _ in range(2)
    ]

    # then: the budget is spent in the posting transaction, in the database, not in Redis
    assert statuses == [201, 429]


# ------------------------------------------------------------------ many processes, at once


@dataclass
class Limited:
    """Two live servers on one fresh database, with low limits; SQL on that database."""

    urls: list[str]
    tokens: list[str]
    user_ids: list[int]
    room: str
    sql: SqlRunner


SETUP = """
import json
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from chat.models import Room
users = [User.objects.create_user(f"limited{n}") for n in range(2)]
Room.objects.create(slug="limited", title="Limited")
print(json.dumps({"ids": [u.pk for u in users],
                  "tokens": [Token.objects.create(user=u).key for u in users]}))
"""

LIMITS = {
    "JOBS_MAX_ACTIVE_PER_USER": "20",
    "JOBS_ENQUEUE_RATE": "1000/min",
    "CHAT_POST_RATE": "10/hour",
}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def limited(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, log_dir: Path
) -> Iterator[Limited]:
    with ExitStack() as cleanup:
        if request.param == "postgres":
            url = cleanup.enter_context(postgres_database("switchboard_limits"))
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('limits') / 'db.sqlite3'}"
        env = child_env(DATABASE_URL=url, **LIMITS)
        made = json.loads(manage_shell(env, SETUP))
        with ThreadPoolExecutor(max_workers=2) as pool:
            started = list(pool.map(lambda _: daphne(env, log_dir / "limits"), range(2)))
        for service, _ in started:
            cleanup.callback(service.stop)
        urls = [server_url for _, server_url in started]
        yield Limited(urls, made["tokens"], made["ids"], "limited", sql_runner(url))


def all_at_once(requests: list[Callable[[], tuple[int, Any, Any]]]) -> list[tuple[int, Any, Any]]:
    """Run every request in its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(requests))

    def run(request: Callable[[], tuple[int, Any, Any]]) -> tuple[int, Any, Any]:
        barrier.wait()
        return request()

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(run, requests))


def test_fifty_simultaneous_enqueues_never_pass_the_active_jobs_cap(limited: Limited):
    # given: one user, 50 requests spread over two server processes
    token, owner = limited.tokens[0], limited.user_ids[0]

    def enqueue(n: int) -> Callable[[], tuple[int, Any, Any]]:
        return lambda: http_json(
            f"{limited.urls[n % 2]}/api/jobs/",
            method="POST",
            body=LATER,
            headers={"Authorization": f"Token {token}"},
            timeout=60,
        )

    # when
    results = all_at_once([enqueue(n) for n in range(50)])

    # then: exactly the cap was taken, the rest refused in the error shape with Retry-After
    statuses = Counter(status for status, _, _ in results)
    active = limited.sql(
        "SELECT count(*) FROM jobs_job WHERE owner_id = %s"
        " AND status IN ('scheduled', 'queued', 'running')",
        (owner,),
    )[0][0]
    print(f"concurrent enqueue: 50 requests -> {dict(statuses)}; {active} unfinished jobs")
    assert statuses == {202: 20, 429: 30}
    assert active == 20
    for status, body, headers in results:
        if status == 429:
            assert body["code"] == "too_many_active_jobs"
            assert int(headers["Retry-After"]) >= 1


def test_forty_simultaneous_posts_get_exactly_the_rate(limited: Limited):
    # given: CHAT_POST_RATE is 10/hour
    token = limited.tokens[1]
    before = limited.sql("SELECT count(*) FROM chat_message", ())[0][0]

    def post(n: int) -> Callable[[], tuple[int, Any, Any]]:
        return lambda: http_json(
            f"{limited.urls[n % 2]}/api/rooms/{limited.room}/messages/",
            method="POST",
            body={"body": f"message {n}"},
            headers={"Authorization": f"Token {token}"},
            timeout=60,
        )

    # when
    results = all_at_once([post(n) for n in range(40)])

    # then
    statuses = Counter(status for status, _, _ in results)
    posted = limited.sql("SELECT count(*) FROM chat_message", ())[0][0] - before
    print(f"concurrent posts: 40 requests -> {dict(statuses)}; {posted} messages stored")
    assert statuses == {201: 10, 429: 30}
    assert posted == 10
    for status, body, headers in results:
        if status == 429:
            assert body["code"] == "rate_limited"
            assert 1 <= int(headers["Retry-After"]) <= 3600
