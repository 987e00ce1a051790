"""A Python client generated from the committed OpenAPI file drives a live server and worker.

openapi-python-client generates the client into a temporary directory (about 3 s); the test
then signs in with it, lists rooms, posts a message, enqueues the tutorial's task with a
countdown and polls it until a real Celery worker has run it.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.factories import RoomFactory, UserFactory
from tests.support.processes import BASE_DIR

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PACKAGE = "switchboard_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The client package, generated from `openapi/openapi.yaml` and importable."""
    out = tmp_path_factory.mktemp("client")
    config = out / "config.yaml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    argv = [sys.executable, "-m", "openapi_python_client", "generate", "--meta", "none"]
    argv += ["--path", str(BASE_DIR / "openapi" / "openapi.yaml")]
    argv += ["--output-path", str(out / PACKAGE), "--config", str(config)]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(out))
    yield out
    sys.path.remove(str(out))
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_generated_client_signs_in_posts_and_runs_a_job(generated, live_server_url, worker):
    # given: a user with a password and a room
    UserFactory.create(username="script", password="a long test password")
    RoomFactory.create(slug="clientroom", title="Client room")
    client_mod = module("client")
    models = module("models")
    anonymous = client_mod.Client(base_url=live_server_url, raise_on_unexpected_status=True)

    # when: sign in for a token
    signed = module("api.auth.auth_token_create").sync(
        client=anonymous,
        body=models.AuthTokenRequest(username="script", password="a long test password"),
    )
    assert isinstance(signed, models.Token), signed
    api = client_mod.AuthenticatedClient(
        base_url=live_server_url,
        token=signed.token,
        prefix="Token",
        raise_on_unexpected_status=True,
    )
    me = module("api.auth.auth_me").sync(client=api)

    # when: list rooms and post a message
    rooms = module("api.rooms.rooms_list").sync(client=api)
    client_id = str(uuid.uuid4())
    posted = module("api.rooms.rooms_messages_create").sync_detailed(
        "clientroom", client=api, body=models.MessagePostRequest(body="hi", client_id=client_id)
    )
    history = module("api.rooms.rooms_messages_list").sync("clientroom", client=api, after=0)

    # when: enqueue with a countdown, then poll
    enqueued = module("api.jobs.jobs_enqueue").sync_detailed(
        client=api,
        body=models.EnqueueDemoSleepRequest(  # each kind has its body, its params typed
            kind=models.EnqueueDemoSleepKindEnum.DEMO_SLEEP,
            params=models.EnqueueDemoSleepRequestParams(steps=2, max_seconds=0.1),
            countdown=1,
        ),
    )
    job = enqueued.parsed
    assert isinstance(job, models.Enqueued), enqueued
    retrieve = module("api.jobs.jobs_retrieve")
    statuses = [job.status]
    deadline = time.monotonic() + 30
    while statuses[-1] not in (models.JobStatusEnum.SUCCEEDED, models.JobStatusEnum.FAILED):
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)
        polled = retrieve.sync(str(job.id), client=api)
        assert isinstance(polled, models.Job), polled
        statuses.append(polled.status)

    # then
    assert me.authenticated
    assert me.user.username == "script"
    assert [room.slug for room in rooms.results] == ["clientroom"]
    assert posted.status_code == 201
    assert posted.parsed.body == "hi"
    assert posted.parsed.seq == 1
    assert [message.client_id for message in history.results] == [client_id]
    assert enqueued.status_code == 202
    assert job.status == models.JobStatusEnum.SCHEDULED
    assert job.channel == f"job:{job.id}"
    assert statuses[-1] == models.JobStatusEnum.SUCCEEDED, statuses
    assert polled.progress.current == polled.progress.total == 2
