"""A job feed relays each update once, never an older one, and forgets only long-idle jobs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from realtime.sockets.job_feed import JobFeed
from realtime.sockets.subscription import GATEWAY, Subscription


def update(job: str, seq: int) -> dict[str, Any]:
    frame = {"type": "job.update", "channel": "jobs:mine", "job": {"id": job, "seq": seq}}
    return {"type": "job.update", "job": job, "seq": seq, "frame": frame}


@pytest.fixture
async def feed() -> Any:
    owners_feed = JobFeed("jobs.owner.1", job_id=None, owner_id=1)
    yield owners_feed
    owners_feed.task.cancel()


def follower(feed: JobFeed) -> list[tuple[str, int]]:
    received: list[tuple[str, int]] = []

    def push(text: str) -> None:
        job = json.loads(text)["job"]
        received.append((job["id"], job["seq"]))

    subscription = Subscription(push, GATEWAY, "hub.1", None)
    subscription.go_live(0)
    feed.subscriptions.add(subscription)
    return received


async def test_each_update_once_and_never_an_older_one(feed):
    received = follower(feed)

    for job, seq in [("a", 1), ("a", 3), ("a", 2), ("b", 1), ("a", 3), ("b", 2)]:
        feed.put(update(job, seq))
    await feed.queue.join()

    assert received == [("a", 1), ("a", 3), ("b", 1), ("b", 2)]


async def test_an_owners_feed_remembers_only_the_most_recently_updated_jobs(feed, monkeypatch):
    monkeypatch.setattr(JobFeed, "REMEMBERED_JOBS", 3)
    received = follower(feed)

    for job in "abcd":
        feed.put(update(job, 1))
    feed.put(update("b", 2))  # b is now the most recently updated
    feed.put(update("e", 1))
    await feed.queue.join()

    assert list(feed.last_seq) == ["d", "b", "e"]
    feed.put(update("d", 1))  # a repeat of a remembered job is still dropped
    await feed.queue.join()
    assert received[-1] == ("e", 1)
