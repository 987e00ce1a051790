"""Shared fixtures: real Redis (from the test settings), a Celery worker and a live ASGI server."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connection
from kombu import Connection
from rest_framework.authtoken.models import Token

from tests.factories import UserFactory
from tests.support.processes import Service, celery_worker, child_env, daphne

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of the RabbitMQ channel layer run in their own pass (`TEST_CHANNEL_LAYER=rabbitmq`,
    see the Makefile); the other passes deselect them rather than skip them, since under
    CI=true nothing may be skipped."""
    if django_settings.CHANNEL_LAYER == "rabbitmq":
        return
    layer_only = [i for i in items if "rabbitmq_layer_run" in getattr(i, "fixturenames", ())]
    if layer_only:
        config.hook.pytest_deselected(items=layer_only)
        items[:] = [item for item in items if item not in layer_only]


# Logs every live server of the run offers (`SWITCHBOARD_TAIL_FILES`), each file in `tail_dir`;
# a test takes one no other test uses with the `tail_file` fixture.
TAIL_NAMES = [f"tail{n:02d}" for n in range(40)]
_unused_tail_names = iter(TAIL_NAMES)


def skip_or_fail(reason: str) -> None:
    """Skip a variant whose service is missing; under CI=true nothing may be skipped."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this variant must run)")
    pytest.skip(reason)


def database_url(vendor: str, settings_dict: dict[str, object]) -> str:
    """The DATABASE_URL that points a child process at the same (test) database."""
    name = str(settings_dict["NAME"])
    if vendor == "sqlite":
        return f"sqlite:///{name}"
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = quote(str(settings_dict.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{name}"


@pytest.fixture(scope="session", autouse=True)
def _broker_answers() -> None:
    """With `TEST_BROKER=rabbitmq`, the whole run needs RabbitMQ: skip (or, in CI, fail)."""
    if os.environ.get("TEST_BROKER") != "rabbitmq":
        return
    url = os.environ["CELERY_BROKER_URL"]
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception:
        skip_or_fail(f"RabbitMQ does not answer at {url} (set TEST_RABBITMQ_URL)")


@pytest.fixture(scope="session", autouse=True)
def _channel_layer_answers() -> Iterator[None]:
    """With `TEST_CHANNEL_LAYER=rabbitmq`, the whole run needs RabbitMQ: skip (or, in CI, fail).

    Afterwards the run's groups exchange is deleted: RabbitMQ would keep it until it restarts.
    """
    if django_settings.CHANNEL_LAYER != "rabbitmq":
        yield
        return
    from realtime.kernel.rabbitmq_layer import carehare_url, probe

    url = django_settings.CHANNEL_LAYER_URL
    try:
        asyncio.run(probe(url))
    except Exception:
        skip_or_fail(f"RabbitMQ does not answer at {url} (set TEST_RABBITMQ_URL)")
    yield
    config = cast(dict[str, Any], django_settings.CHANNEL_LAYERS["default"]["CONFIG"])
    kombu_url = carehare_url(url)
    if not urlsplit(kombu_url).path:
        kombu_url += "//"  # kombu's name of the default virtual host
    with contextlib.suppress(Exception), Connection(kombu_url, connect_timeout=3) as conn:
        channel: Any = conn.default_channel  # py-amqp's, which can delete an exchange
        channel.exchange_delete(config["groups_exchange"])  # a leftover is no failure


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where child processes write their logs (kept by pytest for a failed run)."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def tail_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the files are that the live servers offer as `log:<name>` (none exists at first)."""
    return tmp_path_factory.mktemp("tails")


@dataclass(frozen=True)
class TailFile:
    """A log the live servers offer: its name and its file."""

    name: str
    path: Path

    @property
    def channel(self) -> str:
        return f"log:{self.name}"

    def append(self, data: bytes) -> None:
        with self.path.open("ab") as file:
            file.write(data)


@pytest.fixture
def tail_file(tail_dir: Path) -> TailFile:
    """A log that no other test uses; its file does not exist yet."""
    name = next(_unused_tail_names, None)
    if name is None:
        pytest.fail("every name of TAIL_NAMES is taken: add more")
    return TailFile(name, tail_dir / f"{name}.log")


@pytest.fixture(scope="session")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the live servers and workers write their metrics (`realtime.kernel.metrics`)."""
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="session")
def shared_env(django_db_setup: None, tail_dir: Path, metrics_dir: Path) -> dict[str, str]:
    """Environment for child processes that share this test run's database and Redis."""
    return child_env(
        DATABASE_URL=database_url(connection.vendor, connection.settings_dict),
        SWITCHBOARD_TAIL_FILES=",".join(f"{name}={tail_dir / name}.log" for name in TAIL_NAMES),
        # The live servers and workers add up their metrics, as `make run`'s do.
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )


@pytest.fixture(scope="session")
def worker(shared_env: dict[str, str], log_dir: Path) -> Iterator[Service]:
    """A real Celery worker process on this run's broker queue and test database."""
    service = celery_worker(shared_env, log_dir)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def live_daphne(shared_env: dict[str, str], log_dir: Path) -> Iterator[tuple[Service, str]]:
    """A real Daphne process serving `config.asgi` on the test database, and its URL."""
    service, url = daphne(shared_env, log_dir)
    yield service, url
    service.stop()


@pytest.fixture(scope="session")
def live_server_url(live_daphne: tuple[Service, str]) -> str:
    return live_daphne[1]


@pytest.fixture(scope="session")
def second_server_url(shared_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """Another Daphne process on the same database and Redis (a second ASGI server)."""
    service, url = daphne(shared_env, log_dir)
    yield url
    service.stop()


@pytest.fixture
def user(db: None) -> User:
    return UserFactory.create()


# The people of the room tests: olive owns, mia is a member, sam is neither; alice and bob
# chat in a public room.
@pytest.fixture
def owner(db: None) -> User:
    return UserFactory.create(username="olive")


@pytest.fixture
def member(db: None) -> User:
    return UserFactory.create(username="mia")


@pytest.fixture
def stranger(db: None) -> User:
    return UserFactory.create(username="sam")


@pytest.fixture
def alice(db: None) -> User:
    return UserFactory.create(username="alice")


@pytest.fixture
def bob(db: None) -> User:
    return UserFactory.create(username="bob")


@pytest.fixture
def token(user: User) -> str:
    return str(Token.objects.create(user=user).key)


def _forget_keys(kind: str) -> None:
    """Delete this run's cache keys whose name starts with `kind` (a `SCAN` pattern)."""
    prefix = django_settings.CACHES["default"]["KEY_PREFIX"]
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*:{kind}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def fresh_rate_counters() -> None:
    """Forget this run's rate-limit counters: user ids repeat between tests and databases,
    and every live server's client signs in from 127.0.0.1 (DRF's login throttle,
    `throttle_login_<address>`)."""
    _forget_keys("throttle[:_]")


@pytest.fixture
def fresh_gates() -> None:
    """Forget this run's write gates (read state, room activity): room and user ids repeat
    between tests and databases."""
    _forget_keys("gate:")
