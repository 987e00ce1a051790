"""`job:<id>` and `jobs:mine` on `/ws/`: snapshot, then every update and log line, owner only."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from jobs.services import job_enqueue
from tests.factories import UserFactory
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def make_user(username: str) -> tuple[Any, str]:
    user = UserFactory.create(username=username)
    return user, str(Token.objects.create(user=user).key)


def auth(token: str) -> dict[str, Any]:
    return {"additional_headers": {"Authorization": f"Token {token}"}}


async def test_owner_sees_the_snapshot_then_every_update_and_log_line(live_server_url, worker):
    # given: a job waiting out its countdown (long enough to subscribe on a busy machine)
    owner, token = await database_sync_to_async(make_user)("owner")
    job, _ = await database_sync_to_async(job_enqueue)(
        owner=owner, kind="demo.sleep", params={"steps": 4, "max_seconds": 0.05}, countdown=4
    )
    client = await WsClient.open(live_server_url, **auth(token))

    # when
    subscribed = await client.request(type="subscribe", channel=f"job:{job.pk}")
    snapshot = await client.expect("job.update")
    final = await client.expect(
        lambda f: f["type"] == "job.update" and f["job"]["status"] == "succeeded", timeout=20
    )
    await client.drain(0.3)

    # then
    assert subscribed["type"] == "subscribed"
    assert snapshot["job"]["status"] == "scheduled"
    assert snapshot["job"]["seq"] == subscribed["seq"]
    updates = [f["job"] for f in client.frames if f["type"] == "job.update"]
    seqs = [u["seq"] for u in updates]
    assert seqs == sorted(set(seqs)), seqs  # increasing, none twice
    assert [u["status"] for u in updates][:2] == ["scheduled", "running"]
    assert final["job"]["progress"] == {
        "current": 4,
        "total": 4,
        "message": "Slept 4 of 4 times",
    }
    lines = [f for f in client.frames if f["type"] == "job.log"]
    assert [line["number"] for line in lines] == [1, 2, 3, 4]
    assert all(line["line"].startswith("Going to sleep for ") for line in lines)
    await client.close()


async def test_someone_elses_job_is_as_unknown_as_a_made_up_one(live_server_url):
    owner, _ = await database_sync_to_async(make_user)("owner")
    _, other_token = await database_sync_to_async(make_user)("other")
    job, _ = await database_sync_to_async(job_enqueue)(
        owner=owner, kind="demo.sleep", params={"steps": 1}, countdown=60
    )
    other = await WsClient.open(live_server_url, **auth(other_token))
    anonymous = await WsClient.open(live_server_url)

    replies = [
        await other.request(type="subscribe", channel=f"job:{job.pk}"),
        await other.request(type="subscribe", channel="job:3b241101-e2bb-4255-8caf-4136c566a962"),
        await anonymous.request(type="subscribe", channel=f"job:{job.pk}"),
    ]

    assert [(r["type"], r["code"], r["detail"]) for r in replies] == [
        ("error", "not_found", "No such job.")
    ] * 3
    await other.close()
    await anonymous.close()


async def test_jobs_mine_shows_new_jobs_appearing(live_server_url):
    owner, token = await database_sync_to_async(make_user)("owner")
    client = await WsClient.open(live_server_url, **auth(token))
    await client.request(type="subscribe", channel="jobs:mine")

    job, _ = await database_sync_to_async(job_enqueue)(
        owner=owner, kind="demo.sleep", params={"steps": 1}, countdown=60
    )
    update = await client.expect("job.update")

    assert update["job"]["id"] == str(job.pk)
    assert update["job"]["status"] == "scheduled"
    await client.close()
