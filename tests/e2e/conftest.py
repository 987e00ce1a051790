"""Whole-stack variants: SQLite + Redis always; PostgreSQL and RabbitMQ when they answer."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kombu import Connection

from tests.conftest import skip_or_fail
from tests.support.processes import Stack, child_env, running_stack

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def postgres_answers() -> bool:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


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
    sql: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def _sqlite_sql(path: Path) -> Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    def run(query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(path, timeout=20)) as db, db:
            return db.execute(query.replace("%s", "?"), params).fetchall()

    return run


def _postgres_sql(url: str) -> Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    def run(query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as db, db.cursor() as cursor:
            cursor.execute(query.encode(), params)
            return cursor.fetchall() if cursor.description else []

    return run


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
    database_name = f"switchboard_e2e_{uuid.uuid4().hex[:10]}"
    database_url = f"sqlite:///{tmp / 'db.sqlite3'}"
    sql = _sqlite_sql(tmp / "db.sqlite3")
    if name.startswith("postgres"):
        if not postgres_answers():
            skip_or_fail(f"PostgreSQL does not answer at {POSTGRES_URL} (set TEST_POSTGRES_URL)")
        _postgres_sql(POSTGRES_URL)(f'CREATE DATABASE "{database_name}"', ())
        database_url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{database_name}"
        sql = _postgres_sql(database_url)
    if name.endswith("rabbitmq"):
        if not rabbitmq_answers():
            skip_or_fail(f"RabbitMQ does not answer at {RABBITMQ_URL} (set TEST_RABBITMQ_URL)")
        broker_url = RABBITMQ_URL
    # Its own queue: the run's other workers, on other databases, must not take its tasks.
    queue = f"{os.environ['CELERY_TASK_DEFAULT_QUEUE']}-{name}"
    env = child_env(
        DATABASE_URL=database_url, CELERY_BROKER_URL=broker_url, CELERY_TASK_DEFAULT_QUEUE=queue
    )
    try:
        with running_stack(env, log_dir / name) as stack:
            yield Variant(name, stack, broker_url, queue, sql)
    finally:
        if name.startswith("postgres"):
            _postgres_sql(POSTGRES_URL)(
                f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)', ()
            )
