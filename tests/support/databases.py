"""Databases of their own for tests that run servers on one: throwaway PostgreSQL, and SQL."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Protocol

import psycopg

from tests.conftest import skip_or_fail

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


class SqlRunner(Protocol):
    """Runs one statement in its own connection and returns its rows (none for a write)."""

    def __call__(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...


def postgres_answers() -> bool:
    """Whether the PostgreSQL at `POSTGRES_URL` (`TEST_POSTGRES_URL`) takes a connection."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A new, uniquely named PostgreSQL database: yields its URL, then drops it (WITH (FORCE),
    so sessions a test left open do not keep it). Skips, or under CI=true fails, when
    PostgreSQL does not answer."""
    if not postgres_answers():
        skip_or_fail(f"PostgreSQL does not answer at {POSTGRES_URL} (set TEST_POSTGRES_URL)")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sql_runner(POSTGRES_URL)
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_name(url: str) -> str:
    """The name of the database a PostgreSQL URL points at."""
    return url.rsplit("/", 1)[1]


def sql_runner(database: str | Path) -> SqlRunner:
    """SQL with `%s` placeholders on a database: a PostgreSQL URL (autocommit), or an SQLite
    file (a path or a `sqlite:///` URL) in a transaction of its own."""
    if isinstance(database, str) and not database.startswith("sqlite:///"):
        return _postgres_runner(database)
    return _sqlite_runner(Path(str(database).removeprefix("sqlite:///")))


def _postgres_runner(url: str) -> SqlRunner:
    def run(query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as db, db.cursor() as cursor:
            cursor.execute(query.encode(), params)
            return cursor.fetchall() if cursor.description else []

    return run


def _sqlite_runner(path: Path) -> SqlRunner:
    def run(query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(path, timeout=20)) as db, db:
            return db.execute(query.replace("%s", "?"), params).fetchall()

    return run
