"""The same checks on every stack variant: readiness, auth over REST and socket, a real task."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.cookies import SimpleCookie

import pytest
from celery import Celery
from websockets.asyncio.client import connect

from tests.support.processes import BASE_DIR, http_json, wait_until

pytestmark = pytest.mark.e2e

USERNAME, PASSWORD = "variant-user", "variant-password-1"


def cookies(headers: Message) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


@pytest.fixture(scope="module")
def account(variant) -> dict[str, str]:
    """A user made through the ORM in the variant's own settings, and a token over REST."""
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})",
        ],
        cwd=BASE_DIR,
        env=variant.stack.env,
        check=True,
        capture_output=True,
    )
    status, body, _ = http_json(
        f"{variant.stack.url}/api/auth/token/",
        method="POST",
        body={"username": USERNAME, "password": PASSWORD},
    )
    assert status == 200, body
    return {"token": body["token"]}


def test_readiness_is_ok_on_every_part(variant):
    body = variant.stack.wait_ready()

    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "redis": True,
        "broker": True,
        "worker": True,
        "layer_round_trip": True,
    }


def test_token_works_on_rest(variant, account):
    status, body, _ = http_json(
        f"{variant.stack.url}/api/auth/me/",
        headers={"Authorization": f"Token {account['token']}"},
    )

    assert status == 200
    assert body["user"]["username"] == USERNAME


async def test_token_works_on_the_socket(variant, account):
    url = variant.stack.url.replace("http://", "ws://") + "/ws/"
    async with connect(
        url, additional_headers={"Authorization": f"Token {account['token']}"}
    ) as ws:
        hello = json.loads(await ws.recv())

    assert hello["user"]["username"] == USERNAME


def test_worker_runs_a_task_sent_through_this_broker(variant):
    # given: a real session row (a browser login over REST), then expired in the database
    status, _, headers = http_json(f"{variant.stack.url}/api/auth/csrf/")
    csrf = cookies(headers)["csrftoken"]
    status, body, headers = http_json(
        f"{variant.stack.url}/api/auth/login/",
        method="POST",
        body={"username": USERNAME, "password": PASSWORD},
        headers={
            "X-CSRFToken": csrf,
            "Cookie": f"csrftoken={csrf}",
            "Origin": variant.stack.url,
        },
    )
    assert status == 200, body
    key = cookies(headers)["sessionid"]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat(sep=" ")
    variant.sql("UPDATE django_session SET expire_date = %s WHERE session_key = %s", (past, key))

    # when: the task goes through this variant's broker, as any client would send it
    client = Celery(broker=variant.broker_url)
    with client.connection_for_write() as connection:
        client.send_task(
            "auth.sessions_clear_expired",
            queue=variant.queue,
            connection=connection,
        )

    # then
    wait_until(
        lambda: not variant.sql("SELECT 1 FROM django_session WHERE session_key = %s", (key,)),
        timeout=30,
    )


def test_a_job_with_a_countdown_runs_once_on_this_broker(variant, account):
    # given
    headers = {"Authorization": f"Token {account['token']}"}
    status, job, location = http_json(
        f"{variant.stack.url}/api/jobs/",
        method="POST",
        body={"kind": "demo.sleep", "params": {"steps": 2, "max_seconds": 0}, "countdown": 1},
        headers=headers,
    )
    assert status == 202, job

    # when: polled until it ends
    seen: list[str] = []

    def ended() -> dict | None:
        _, state, _ = http_json(location["Location"], headers=headers)
        if not seen or seen[-1] != state["status"]:
            seen.append(state["status"])
        return state if state["status"] in ("succeeded", "failed", "cancelled") else None

    final = wait_until(ended, timeout=30, interval=0.05)

    # then: never early, ran once, every state in order
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 1
    assert datetime.fromisoformat(final["started_at"]) >= datetime.fromisoformat(final["run_at"])
    assert seen[0] == "scheduled"
    assert seen[-1] == "succeeded"
    assert seen == sorted(seen, key=["scheduled", "queued", "running", "succeeded"].index)
