"""Share links: a scoped, expiring, revocable token that reads one job, over REST and on the
socket, and nothing else."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.models import Job, JobShare
from jobs.services import SHARES_PER_JOB, job_enqueue
from tests.factories import UserFactory
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def a_job(owner: Any) -> Job:
    job, _ = job_enqueue(owner=owner, kind="demo.sleep", params={}, countdown=3600)
    return job


def share(api: APIClient, job: Job, **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/jobs/{job.pk}/shares/", body, format="json")
    assert response.status_code == 201, response.json()
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
def stranger_api() -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory.create(username="stranger"))
    return client


def test_the_holder_of_a_link_reads_that_job_without_signing_in(api, owner):
    job = a_job(owner)
    link = share(api, job)
    anonymous = APIClient()
    token = link["token"]

    reads = {
        path: anonymous.get(f"/api/jobs/{job.pk}/{path}?share={token}").status_code
        for path in ("", "log/", "output/", "attempts/")
    }

    assert reads == {"": 200, "log/": 200, "output/": 200, "attempts/": 200}
    assert anonymous.get(link["url"]).json()["id"] == str(job.pk)
    assert link["channel"] == f"job:{job.pk}"
    stored = JobShare.objects.get(pk=link["id"])
    assert stored.token_hash != token  # only its hash is kept
    assert token not in str(api.get(f"/api/jobs/{job.pk}/shares/").json())


def test_a_link_reads_nothing_else(api, owner, stranger_api):
    job, other_job = a_job(owner), a_job(owner)
    token = share(api, job)["token"]
    anonymous = APIClient()

    # other jobs, the owner's account and lists, writes: as if there were no token
    assert anonymous.get(f"/api/jobs/{other_job.pk}/?share={token}").status_code == 404
    assert anonymous.get(f"/api/jobs/?share={token}").status_code == 401
    assert anonymous.get(f"/api/auth/me/?share={token}").json()["authenticated"] is False
    assert anonymous.get(f"/api/jobs/{job.pk}/download/?share={token}").status_code == 401
    for write in ("cancel/", "retry/", "shares/"):
        assert anonymous.post(f"/api/jobs/{job.pk}/{write}?share={token}").status_code == 401
        answered = stranger_api.post(f"/api/jobs/{job.pk}/{write}?share={token}")
        assert (answered.status_code, answered.json()["code"]) == (404, "not_found"), write
    assert Job.objects.get(pk=job.pk).status == "scheduled"  # not cancelled by any of them


def test_an_expired_revoked_or_made_up_token_is_no_link(api, owner):
    job = a_job(owner)
    expired, revoked = share(api, job), share(api, job)
    JobShare.objects.filter(pk=expired["id"]).update(expires_at=timezone.now() - timedelta(1))
    gone = api.delete(f"/api/jobs/{job.pk}/shares/{revoked['id']}/")
    anonymous = APIClient()

    answers = [
        anonymous.get(f"/api/jobs/{job.pk}/?share={token}")
        for token in (expired["token"], revoked["token"], "made-up", "x" * 5000)
    ]

    assert gone.status_code == 204
    assert [(a.status_code, a.json()["code"]) for a in answers] == [(404, "not_found")] * 4
    listed = {s["id"]: s for s in api.get(f"/api/jobs/{job.pk}/shares/").json()}
    assert listed[revoked["id"]]["revoked_at"] is not None


def test_only_the_owner_shares_and_within_bounds(api, owner, stranger_api):
    job = a_job(owner)
    staff = APIClient()
    staff.force_authenticate(UserFactory.create(username="admin", is_staff=True))

    by_stranger = stranger_api.post(f"/api/jobs/{job.pk}/shares/", {}, format="json")
    by_staff = staff.post(f"/api/jobs/{job.pk}/shares/", {}, format="json")
    too_long = api.post(f"/api/jobs/{job.pk}/shares/", {"expires_in": 10**9}, format="json")
    made = [share(api, job, expires_in=60) for _ in range(SHARES_PER_JOB)]
    one_more = api.post(f"/api/jobs/{job.pk}/shares/", {}, format="json")
    revoke_by_stranger = stranger_api.delete(f"/api/jobs/{job.pk}/shares/{made[0]['id']}/")

    assert (by_stranger.status_code, by_stranger.json()["code"]) == (404, "not_found")
    assert (by_staff.status_code, by_staff.json()["code"]) == (403, "not_job_owner")
    assert too_long.status_code == 400
    assert (one_more.status_code, one_more.json()["code"]) == (409, "too_many_shares")
    assert revoke_by_stranger.status_code == 404
    assert JobShare.objects.filter(job=job, revoked_at=None).count() == SHARES_PER_JOB


async def test_a_link_follows_the_jobs_channel_until_it_is_revoked_or_expires(
    live_server_url, owner
):
    api = APIClient()
    api.force_authenticate(owner)
    job, other_job = await database_sync_to_async(lambda: (a_job(owner), a_job(owner)))()
    revoked = await database_sync_to_async(share)(api, job)
    expiring = await database_sync_to_async(share)(api, job)
    await database_sync_to_async(JobShare.objects.filter(pk=expiring["id"]).update)(
        expires_at=timezone.now() + timedelta(seconds=2)
    )
    anonymous = await WsClient.open(live_server_url)
    second = await WsClient.open(live_server_url)
    channel = f"job:{job.pk}"

    refused = [
        await anonymous.request(
            type="subscribe", channel=f"job:{other_job.pk}", share=revoked["token"]
        ),
        await anonymous.request(type="subscribe", channel="room:lobby", share=revoked["token"]),
        await anonymous.request(type="subscribe", channel="jobs:mine", share=revoked["token"]),
    ]
    subscribed = await anonymous.request(type="subscribe", channel=channel, share=revoked["token"])
    snapshot = await anonymous.expect("job.update")
    await second.request(type="subscribe", channel=channel, share=expiring["token"])
    await database_sync_to_async(api.delete)(f"/api/jobs/{job.pk}/shares/{revoked['id']}/")
    ended = await anonymous.expect("unsubscribed")
    again = await anonymous.request(type="subscribe", channel=channel, share=revoked["token"])
    expired = await second.expect("unsubscribed", timeout=10)
    await database_sync_to_async(api.post)(f"/api/jobs/{job.pk}/cancel/")  # a change after
    await asyncio.sleep(0.5)
    await anonymous.drain(0.3)
    await second.drain(0.3)

    assert [(r["type"], r["code"]) for r in refused] == [
        ("error", "not_found"),
        ("error", "invalid_frame"),
        ("error", "invalid_frame"),
    ]
    assert subscribed["type"] == "subscribed"
    assert snapshot["job"]["id"] == str(job.pk)
    assert ended == {"type": "unsubscribed", "channel": channel, "reason": "share_revoked"}
    assert (again["type"], again["code"]) == ("error", "not_found")
    assert expired == {"type": "unsubscribed", "channel": channel, "reason": "share_expired"}
    for client in (anonymous, second):  # nothing of the job after its link ended
        types = [f["type"] for f in client.frames]
        assert "job.update" not in types[types.index("unsubscribed") :], types
    await anonymous.close()
    await second.close()
