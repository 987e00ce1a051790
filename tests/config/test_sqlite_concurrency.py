"""Two processes writing one SQLite file at once (web and worker) never hit a lock."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import BASE_DIR, child_env

WRITER = """
import django
django.setup()
from django.db import transaction
from django.contrib.auth.models import User
from chat.models import Room
tag = {tag!r}
for n in range(150):
    with transaction.atomic():
        user = User.objects.create(username=f"{{tag}}-{{n}}")
        room = Room.objects.create(slug=f"{{tag}}-{{n}}", created_by=user)
        room.title = "x"
        room.save()
print("done")
"""


@pytest.mark.skipif(
    not child_env().get("DATABASE_URL", "sqlite").startswith("sqlite"), reason="SQLite only"
)
def test_two_writer_processes_on_one_sqlite_file(tmp_path: Path):
    env = child_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True
    )

    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER.format(tag=tag)],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("web", "worker")
    ]
    results = [writer.communicate(timeout=120) for writer in writers]

    for writer, (out, err) in zip(writers, results, strict=True):
        assert writer.returncode == 0, err[-2000:]
        assert "database is locked" not in err
        assert out.strip() == "done"
