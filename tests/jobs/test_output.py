"""A job's output stream: written in order and bounded, read over REST after a `seq`, pushed
live as `job.output` frames and replayed by `since` on (re)subscribe with nothing lost or
doubled; on real workers and a live server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.frames import job_output_event
from jobs.kinds import DEMO_TEXT
from jobs.models import Job, JobOutputChunk
from jobs.selectors import job_output
from jobs.services import OUTPUT_FRAME_MAX, job_enqueue, job_output_append, jobs_output_append
from realtime.kernel import events
from tests.factories import UserFactory
from tests.support.jobs import finished
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def a_job(owner: Any, countdown: float = 3600) -> Job:
    job, _ = job_enqueue(owner=owner, kind="demo.sleep", params={}, countdown=countdown)
    return job


def test_chunks_are_numbered_in_order_across_writes(owner):
    job = a_job(owner)

    first = job_output_append(job_id=job.pk, chunks=["a", "b"])
    second = job_output_append(job_id=job.pk, chunks=["c"])
    nothing = job_output_append(job_id=job.pk, chunks=[])

    assert (first, second, nothing) == (2, 3, 0)
    assert [(c.seq, c.data) for c in job_output(job_id=job.pk)] == [(1, "a"), (2, "b"), (3, "c")]
    assert [c.seq for c in job_output(job_id=job.pk, after=2)] == [3]
    assert Job.objects.get(pk=job.pk).output_chunks == 3


def test_one_round_writes_several_jobs_and_drops_a_deleted_jobs_chunks(owner):
    jobs = [a_job(owner) for _ in range(3)]
    job_output_append(job_id=jobs[0].pk, chunks=["before"])
    gone = a_job(owner)
    gone_id = gone.pk
    gone.delete()

    written = jobs_output_append(
        batches={jobs[0].pk: ["a", "b"], jobs[1].pk: ["c"], gone_id: ["lost"], jobs[2].pk: []}
    )

    assert written == {jobs[0].pk: 3, jobs[1].pk: 1}
    assert [c.data for c in job_output(job_id=jobs[0].pk)] == ["before", "a", "b"]
    assert [c.data for c in job_output(job_id=jobs[1].pk)] == ["c"]
    assert not JobOutputChunk.objects.filter(job_id=gone_id).exists()
    with pytest.raises(Job.DoesNotExist):
        job_output_append(job_id=gone_id, chunks=["x"])


@override_settings(JOBS_OUTPUT_KEEP=100_000)
def test_a_round_larger_than_one_statement_keeps_every_chunk_in_order(owner):
    jobs = [a_job(owner) for _ in range(120)]  # more jobs than one UPDATE takes
    batches = {job.pk: [f"{n}" for n in range(7)] for job in jobs}
    batches[jobs[0].pk] = [str(n) for n in range(1_234)]  # more rows than one INSERT takes

    written = jobs_output_append(batches=batches)

    assert written == {job.pk: len(batches[job.pk]) for job in jobs}
    assert [c.data for c in job_output(job_id=jobs[0].pk, limit=1000)][-1] == "999"
    assert JobOutputChunk.objects.filter(job__in=jobs).count() == 1_234 + 119 * 7


def test_the_output_event_is_the_contracts_frame():
    job_id = "4c1b4e58-6f6f-4c34-9d5a-3a4f1f7d2c10"
    event = job_output_event(job_id, 41, ["a", "b"])

    model = events.JobOutputFrame.model_validate(event["frame"])
    assert event["frame"] == events.dump(model)
    assert [(c.seq, c.data) for c in model.chunks] == [(41, "a"), (42, "b")]
    assert (event["type"], event["job"]) == ("job.output", job_id)


@override_settings(JOBS_OUTPUT_CHUNK_MAX=100)
def test_a_huge_chunk_is_cut_into_pieces_and_nothing_is_lost(owner):
    job = a_job(owner)
    huge = "".join(f"{n:05d}" for n in range(1000))  # 5,000 characters

    last = job_output_append(job_id=job.pk, chunks=[huge, "tail"])

    chunks = job_output(job_id=job.pk)
    assert last == 51
    assert all(len(c.data) <= 100 for c in chunks)
    assert "".join(c.data for c in chunks) == huge + "tail"


@override_settings(JOBS_OUTPUT_KEEP=250)
def test_only_the_newest_chunks_are_kept(owner, api):
    job = a_job(owner)

    for _ in range(8):
        job_output_append(job_id=job.pk, chunks=[str(n) for n in range(50)])

    kept = JobOutputChunk.objects.filter(job=job)
    page = api.get(f"/api/jobs/{job.pk}/output/?after=0&limit=5").json()
    assert kept.count() <= 250 + 100  # trimmed once every 100 chunks
    assert min(kept.values_list("seq", flat=True)) > 400 - 250 - 100
    assert (page["output_chunks"], page["first_seq"]) == (400, 151)
    assert page["results"][0]["seq"] == min(kept.values_list("seq", flat=True))


def test_output_over_rest_pages_after_a_seq_and_is_the_owners_only(owner, api):
    job = a_job(owner)
    job_output_append(job_id=job.pk, chunks=[f"word{n} " for n in range(30)])
    stranger = APIClient()
    stranger.force_authenticate(UserFactory.create(username="stranger"))

    page = api.get(f"/api/jobs/{job.pk}/output/?after=10&limit=5").json()
    someone_elses = stranger.get(f"/api/jobs/{job.pk}/output/")
    too_many = api.get(f"/api/jobs/{job.pk}/output/?limit=100000")

    assert page == {
        "results": [{"seq": n, "data": f"word{n - 1} "} for n in range(11, 16)],
        "output_chunks": 30,
        "first_seq": 1,
    }
    assert (someone_elses.status_code, someone_elses.json()["code"]) == (404, "not_found")
    assert too_many.status_code == 400


async def test_a_stream_reaches_its_subscribers_live_and_a_reconnect_resumes_it_by_since(
    live_server_url, worker, owner
):
    # given: the demo kind writing its text word by word, 100 words a second, twice
    token = await database_sync_to_async(lambda: str(Token.objects.create(user=owner).key))()
    auth: dict[str, Any] = {"additional_headers": {"Authorization": f"Token {token}"}}
    job = await database_sync_to_async(a_job)(owner, countdown=2)
    await database_sync_to_async(Job.objects.filter(pk=job.pk).update)(
        params={"text": DEMO_TEXT, "words_per_second": 100, "repeat": 2}, kind="demo.stream"
    )
    words = len(DEMO_TEXT.split(" ")) * 2
    channel = f"job:{job.pk}"
    first = await WsClient.open(live_server_url, **auth)
    await first.request(type="subscribe", channel=channel, since=0)

    # when: the first client goes away half way through and comes back with what it had
    await first.expect(
        lambda f: f["type"] == "job.output" and f["chunks"][-1]["seq"] >= words // 2, timeout=20
    )
    had = chunks_of(first.frames)
    await first.close()
    again = await WsClient.open(live_server_url, **auth)
    await again.request(type="subscribe", channel=channel, since=had[-1][0])
    late = await WsClient.open(live_server_url, **auth)  # joins late, wants it all
    await late.request(type="subscribe", channel=channel, since=0)
    for client in (again, late):
        await client.expect(
            lambda f: f["type"] == "job.update" and f["job"]["status"] == "succeeded", timeout=30
        )
        await client.drain(0.5)

    # then: each chunk once, in order, none missing; several to a frame when they come fast
    resumed = had + chunks_of(again.frames)
    assert [seq for seq, _ in resumed] == list(range(1, words + 1))
    assert "".join(data for _, data in resumed) == (DEMO_TEXT + "\n") * 2
    assert chunks_of(late.frames) == resumed
    replay = next(f for f in late.frames if f["type"] == "job.output")
    assert len(replay["chunks"]) > 1  # what was written before it subscribed, at once
    await again.close()
    await late.close()


async def test_an_output_flood_is_bounded_and_the_socket_stays_usable(
    live_server_url, worker, owner
):
    token = await database_sync_to_async(lambda: str(Token.objects.create(user=owner).key))()
    client = await WsClient.open(
        live_server_url, additional_headers={"Authorization": f"Token {token}"}
    )
    job, _ = await database_sync_to_async(job_enqueue)(
        owner=owner, kind="tests.flood", params={"chunks": 8000, "size": 10}, countdown=3
    )
    # From its first chunk, even if a busy machine subscribes after the job started.
    await client.request(type="subscribe", channel=f"job:{job.pk}", since=0)

    await client.expect(
        lambda f: f["type"] == "job.update" and f["job"]["status"] == "succeeded", timeout=60
    )
    await client.drain(0.5)
    started = time.monotonic()
    pong = await client.request(type="ping", ref="after-the-flood")
    answered = time.monotonic() - started

    received = chunks_of(client.frames)
    frames = [f for f in client.frames if f["type"] == "job.output"]
    seqs = [seq for seq, _ in received]
    snapshot = next(f["job"] for f in client.frames if f["type"] == "job.update")
    ran = await database_sync_to_async(Job.objects.get)(pk=job.pk)
    assert ran.started_at >= ran.run_at  # not before its countdown
    # In order, none twice, to the last; from the first if it subscribed before the job
    # wrote (as it does unless the machine is busy for the whole countdown), else from the
    # oldest still kept then.
    assert seqs == list(range(seqs[0], 8001))
    if snapshot["output_chunks"] == 0:
        assert seqs[0] == 1
    else:
        assert seqs[0] <= max(1, snapshot["output_chunks"] - 5000 + 1)
    assert len(frames) < len(seqs) / 5  # many chunks to a frame
    assert max(len(f["chunks"]) for f in frames) <= OUTPUT_FRAME_MAX  # none without bound
    assert pong["type"] == "pong"
    assert answered < 2
    stored = await database_sync_to_async(JobOutputChunk.objects.filter(job=job).count)()
    assert stored <= 5000 + 100  # JOBS_OUTPUT_KEEP, trimmed every 100
    await client.close()


def chunks_of(frames: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [
        (chunk["seq"], chunk["data"])
        for frame in frames
        if frame["type"] == "job.output"
        for chunk in frame["chunks"]
    ]


def test_the_stream_of_a_finished_job_reads_whole_over_rest(api, worker):
    body = api.post(
        "/api/jobs/",
        {"kind": "demo.stream", "params": {"text": "one two three", "words_per_second": 200}},
        format="json",
    ).json()

    job = finished(body["id"])
    page = api.get(f"/api/jobs/{body['id']}/output/").json()

    assert job.status == "succeeded"
    assert [c["data"] for c in page["results"]] == ["one ", "two ", "three\n"]
    assert page["output_chunks"] == 3
