"""A log feed: one reader per file in a process, for all its subscribers, from real files."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from realtime.kernel import events
from realtime.logs.selectors import LogFile
from realtime.logs.tail import Line, Step
from realtime.sockets.log_feed import (
    FRAME_LINES,
    LogFeeds,
    lines_after,
    log_lines_frames,
)
from realtime.sockets.subscription import GATEWAY, Subscription


@pytest.fixture(autouse=True)
def quick_polls(settings):
    settings.SWITCHBOARD_TAIL_POLL = 0.02


def follower(received: list[Line]) -> Subscription:
    """A subscription that collects the lines of the `log.lines` frames pushed to it."""

    def push(text: str) -> None:
        frame = json.loads(text)
        events.server_frame_adapter.validate_python(frame)
        received.extend(Line(line["text"], line["offset"], line["cut"]) for line in frame["lines"])

    return Subscription(push, GATEWAY, "hub.1", None)


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


async def test_two_subscribers_share_one_reader_that_stops_with_the_last(tmp_path):
    # given
    log = LogFile("app", tmp_path / "app.log")
    log.path.write_bytes(b"history\n")
    feeds = LogFeeds()
    first: list[Line] = []
    second: list[Line] = []
    alice, bob = follower(first), follower(second)

    # when
    assert await feeds.join(log, alice, None) == 8
    alice.go_live(0)
    feed = feeds.feeds["app"]
    assert await feeds.join(log, bob, None) == 8
    bob.go_live(0)
    append(log.path, b"one\ntwo\n")
    await until(lambda: len(first) == 2 and len(second) == 2)

    # then: one feed, one open file, the same lines for both
    assert list(feeds.feeds) == ["app"]
    assert feeds.feeds["app"] is feed
    assert first == second == [Line("one", 12), Line("two", 16)]

    # when: one leaves, then the other
    feeds.leave("app", alice)
    append(log.path, b"three\n")
    await until(lambda: len(second) == 3)
    feeds.leave("app", bob)

    # then
    assert len(first) == 2
    assert feeds.feeds == {}
    await until(lambda: feed.task.done() and feed.tail.fd is None)


async def test_a_subscriber_resumes_after_its_last_offset(tmp_path):
    # given: lines written while nobody (in this process) followed the file
    log = LogFile("app", tmp_path / "app.log")
    log.path.write_bytes(b"seen 1\nseen 2\nmissed 1\nmissed 2\n")
    feeds = LogFeeds()
    received: list[Line] = []
    subscription = follower(received)

    # when
    start = await feeds.join(log, subscription, 14)
    append(log.path, b"live\n")  # may be read before or after it goes live: held, not lost
    subscription.go_live(0)
    await until(lambda: len(received) == 3)
    await asyncio.sleep(0.1)

    # then
    assert start == 14
    assert received == [Line("missed 1", 23), Line("missed 2", 32), Line("live", 37)]
    feed = feeds.feeds["app"]
    feeds.leave("app", subscription)
    await until(feed.task.done)


def test_lines_after_an_offset_and_across_a_new_file():
    step = Step(lines=[Line("a", 4), Line("b", 8), Line("c", 12)])
    rotated = Step(lines=[Line("old", 12), Line("new", 4)], reset_at=1)

    assert lines_after(step, 4) == ([Line("b", 8), Line("c", 12)], None)
    assert lines_after(step, 12) == ([], 12)  # still to skip through 12
    assert lines_after(rotated, 12) == ([Line("new", 4)], None)


def test_frames_are_bounded_and_keep_the_order():
    lines = [Line(f"line {n}", n) for n in range(1, 2 * FRAME_LINES + 2)]

    frames = [json.loads(text) for text in log_lines_frames("log:app", lines)]

    assert [len(frame["lines"]) for frame in frames] == [FRAME_LINES, FRAME_LINES, 1]
    assert [line["offset"] for frame in frames for line in frame["lines"]] == list(
        range(1, 2 * FRAME_LINES + 2)
    )
    for frame in frames:
        events.server_frame_adapter.validate_python(frame)
