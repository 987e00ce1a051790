"""Whole-stack variants: SQLite + Redis always; PostgreSQL and RabbitMQ when they answer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from kombu import Connection

from tests.conftest import skip_or_fail
from tests.support.databases import SqlRunner, postgres_database, sql_runner
from tests.support.processes import Stack, child_env, running_stack

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def rabbitmq_answers() -> bool:
    try:
        with Connection(RABBITMQ_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
            return True
    except Exception:
        return False


@dataclass
class Variant:
    """A running stack and a way to run SQL on its database."""

    name: str
    stack: Stack
    broker_url: str
    queue: str
    sql: SqlRunner


@pytest.fixture(
    scope="module",
    params=[
        "sqlite-redis",
        pytest.param("postgres-redis", marks=pytest.mark.postgres),
        pytest.param("sqlite-rabbitmq", marks=pytest.mark.rabbitmq),
    ],
)
def variant(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, log_dir: Path
) -> Iterator[Variant]:
    name: str = request.param
    tmp = tmp_path_factory.mktemp(name)
    redis_url = os.environ["REDIS_URL"]
    broker_url = redis_url
    with ExitStack() as cleanup:
        database_url = f"sqlite:///{tmp / 'db.sqlite3'}"
        if name.startswith("postgres"):
            database_url = cleanup.enter_context(postgres_database("switchboard_e2e"))
        if name.endswith("rabbitmq"):
            if not rabbitmq_answers():
                skip_or_fail(f"RabbitMQ does not answer at {RABBITMQ_URL} (set TEST_RABBITMQ_URL)")
            broker_url = RABBITMQ_URL
        # Its own queue: the run's other workers, on other databases, must not take its tasks.
        queue = f"{os.environ['CELERY_TASK_DEFAULT_QUEUE']}-{name}"
        env = child_env(
            DATABASE_URL=database_url, CELERY_BROKER_URL=broker_url, CELERY_TASK_DEFAULT_QUEUE=queue
        )
        stack = cleanup.enter_context(running_stack(env, log_dir / name))
        yield Variant(name, stack, broker_url, queue, sql_runner(database_url))
