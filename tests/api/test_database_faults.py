"""PostgreSQL unavailable under a live server: clean 503s, nothing half-written or sent.

The server runs on a database of its own, which the test closes to connections (and whose
sessions it ends) while requests come in, then opens again.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from config.redis_server import PrivateRedis
from tests.support.databases import POSTGRES_URL, database_name, postgres_database, sql_runner
from tests.support.processes import BASE_DIR, Service, child_env, daphne, http_json

pytestmark = pytest.mark.postgres

admin_sql = sql_runner(POSTGRES_URL)


@dataclass
class Database:
    name: str
    url: str

    def close_to_connections(self) -> None:
        """What a database going away looks like to the server: every connection refused."""
        admin_sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        admin_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.name,),
        )

    def open_to_connections(self) -> None:
        admin_sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        return sql_runner(self.url)(query)


@pytest.fixture
def database() -> Iterator[Database]:
    with postgres_database("switchboard_faults") as url:
        yield Database(database_name(url), url)


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


CREATE_TOKEN = """
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
user = User.objects.create_user("pg-faults")
print(Token.objects.create(user=user).key)
"""


@pytest.mark.timeout(180)
def test_a_database_going_away_is_a_503_with_nothing_half_done(
    database: Database, tmp_path: Path, log_dir: Path
):
    # given: a live server on its own PostgreSQL database, with a broker queue the test reads
    # (and no worker, so every message sent stays there to be counted)
    broker = PrivateRedis(tmp_path / "broker").start()
    queue = f"pg-faults-{uuid.uuid4().hex[:8]}"
    env = child_env(
        DATABASE_URL=database.url, CELERY_BROKER_URL=broker.url, CELERY_TASK_DEFAULT_QUEUE=queue
    )
    manage(env, "migrate", "--noinput", "-v0")
    token = manage(env, "shell", "-v0", "-c", CREATE_TOKEN).strip().splitlines()[-1]
    headers = {"Authorization": f"Token {token}"}
    server: Service | None = None
    try:
        server, url = daphne(env, log_dir / "pg-faults")

        def call(method: str, path: str, body: Any = None) -> tuple[int, Any, Any, float]:
            started = time.monotonic()
            status, reply, got = http_json(
                f"{url}{path}", method=method, body=body, headers=headers, timeout=30
            )
            return status, reply, got, time.monotonic() - started

        def messages_sent() -> int:
            return int(Redis.from_url(broker.url).llen(queue))  # type: ignore[arg-type]

        def enqueue() -> tuple[int, Any, Any, float]:
            job = {"kind": "demo.sleep", "params": {"steps": 1}, "countdown": 60}
            return call("POST", "/api/jobs/", job)

        status, before, _, _ = enqueue()
        assert status == 202, before
        assert messages_sent() == 1

        # when: the database closes to connections and ends the server's sessions
        database.close_to_connections()
        answers = {
            "enqueue": enqueue(),
            "poll": call("GET", f"/api/jobs/{before['id']}/"),
            "list": call("GET", "/api/jobs/"),
            "cancel": call("POST", f"/api/jobs/{before['id']}/cancel/"),
            "rooms": call("GET", "/api/rooms/"),
            "post": call("POST", "/api/rooms/lobby/messages/", {"body": "lost?"}),
        }
        ready = http_json(f"{url}/api/health/ready/", timeout=30)
        live = http_json(f"{url}/api/health/")
        slowest = max(elapsed for *_, elapsed in answers.values())
        print(f"503 database_unavailable answered in at most {slowest * 1000:.0f} ms")

        # then: each is a 503 in the one error shape, with Retry-After; nothing reached the broker
        for name, (status, reply, got, _) in answers.items():
            assert status == 503, (name, status, reply)
            assert reply["code"] == "database_unavailable", (name, reply)
            assert reply["detail"]
            assert got["Retry-After"], name
        assert ready[0] == 503
        assert ready[1]["checks"]["database"]["ok"] is False
        assert live[0] == 200
        assert messages_sent() == 1

        # when: the database is back
        database.open_to_connections()
        status, after, _, _ = enqueue()

        # then: the server serves again; only what was answered 2xx was written, and the job
        # refused during the outage was neither written nor sent
        assert status == 202, after
        assert call("GET", f"/api/jobs/{before['id']}/")[1]["status"] == "scheduled"
        assert messages_sent() == 2
        jobs = database.rows("SELECT id::text, status, cancel_requested FROM jobs_job ORDER BY 1")
        assert sorted(jobs) == sorted(
            [(before["id"], "scheduled", False), (after["id"], "scheduled", False)]
        )
        assert database.rows("SELECT count(*) FROM chat_message") == [(0,)]
    finally:
        if server is not None:
            server.stop()
        broker.stop()
