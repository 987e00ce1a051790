"""The settings profiles: production refuses to start without its secrets; local is safe."""

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from chat.models import Room
from tests.support.processes import BASE_DIR

PROBE = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"


def run_profile(profile: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"}
    }
    clean.update(DJANGO_SETTINGS_MODULE=f"config.settings.{profile}", **env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=clean, capture_output=True, text=True
    )


def test_production_refuses_to_start_without_a_secret_key():
    # when
    result = run_profile("production", ALLOWED_HOSTS="example.com")

    # then
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = run_profile("production", SECRET_KEY="x" * 50)

    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stderr


def test_production_starts_with_its_secrets_and_debug_off_even_if_asked():
    result = run_profile("production", SECRET_KEY="x" * 50, ALLOWED_HOSTS="example.com", DEBUG="1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_local_profile_starts_with_no_environment_at_all():
    result = run_profile("local")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_sqlite_is_configured_for_a_second_writer_process(settings):
    options = settings.DATABASES["default"].get("OPTIONS", {})
    if connection.vendor != "sqlite":
        return
    assert options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"]
    assert options["timeout"] >= 5


@pytest.mark.django_db(transaction=True)
async def test_a_sqlite_connection_outlives_each_database_sync_to_async_call(settings):
    # Closing the last SQLite connection checkpoints the WAL: doing it after every socket
    # handler's query made each posted message pay for a checkpoint and a reopen.
    if connection.vendor != "sqlite":
        pytest.skip("only SQLite pays for closing")

    @database_sync_to_async
    def connection_in_use() -> int:
        connection.ensure_connection()
        return id(connection.connection)

    assert await connection_in_use() == await connection_in_use()


@pytest.mark.django_db(transaction=True)
def test_sqlite_commits_leave_the_checkpoint_to_the_process_checkpointer():
    # A commit that checkpointed the WAL itself stalled its caller for 14-22 ms.
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone()[0] == 0
    slug = f"checkpoint-{uuid.uuid4().hex[:8]}"
    Room.objects.create(slug=slug, title="Checkpoint")

    # The database file itself, without its log: the row is there once a checkpoint ran.
    path = Path(connection.settings_dict["NAME"]).resolve()

    def in_main_file() -> bool:
        with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as main_file:
            try:
                query = "SELECT 1 FROM chat_room WHERE slug = ?"
                return bool(main_file.execute(query, [slug]).fetchall())
            except sqlite3.OperationalError:  # not even the table has been checkpointed
                return False

    deadline = time.monotonic() + 10
    while not in_main_file():
        assert time.monotonic() < deadline, "the WAL was not checkpointed within 10 s"
        time.sleep(0.2)
