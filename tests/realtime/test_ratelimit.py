"""The sliding-window limit in real Redis, with a clock the tests move instead of sleeping."""

from __future__ import annotations

import uuid

import pytest

from realtime.kernel.ratelimit import SlidingWindowLimit, parse_rate

START = 60.0 * 29_000_000  # a minute begins here


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def limit(clock: Clock) -> SlidingWindowLimit:
    return SlidingWindowLimit(f"test-{uuid.uuid4().hex}", clock=clock)


def test_rates_read_as_requests_per_period():
    assert parse_rate("30/min") == (30, 60)
    assert parse_rate("2/s") == (2, 1)
    assert parse_rate("10/hour") == (10, 3600)
    assert parse_rate("1/day") == (1, 86400)
    with pytest.raises(ValueError, match="A rate is"):
        parse_rate("lots")


def test_the_rate_is_per_client(limit: SlidingWindowLimit):
    # the first two of a minute pass; the third waits for the next minute (no earlier one)
    assert [limit.take(who="user:1", rate="2/min") for _ in range(3)] == [None, None, 60]
    assert limit.take(who="user:2", rate="2/min") is None
    assert limit.take(who="addr:192.0.2.1", rate="2/min") is None


def test_a_burst_at_a_window_edge_waits_until_the_rate_allows_one_more(
    limit: SlidingWindowLimit, clock: Clock
):
    # given: the whole rate spent in the last second of a minute
    clock.now = START + 59.0
    assert [limit.take(who="user:1", rate="2/min") for _ in range(2)] == [None, None]

    # when: one more then, and two just after the minute turns
    at_the_end = limit.take(who="user:1", rate="2/min")
    clock.now = START + 60.5
    just_after = [limit.take(who="user:1", rate="2/min") for _ in range(2)]

    # then: the previous minute still weighs 1 of 2, so one more fits, and the next one when
    # half of that minute has faded out: 29.5 s later, told as 30 whole seconds
    assert at_the_end == 1
    assert just_after == [None, 30]
    clock.now = START + 60.5 + 29
    assert limit.take(who="user:1", rate="2/min") == 1  # too early: not counted either
    clock.now = START + 60.5 + 30
    assert limit.take(who="user:1", rate="2/min") is None


def test_a_refused_request_is_not_counted(limit: SlidingWindowLimit, clock: Clock):
    # given: the rate spent early in a minute
    clock.now = START + 1.0
    assert limit.take(who="user:1", rate="1/min") is None

    # when: many refused retries, then the next minute (the previous one fading from 1)
    refused = [limit.take(who="user:1", rate="1/min") for _ in range(5)]
    clock.now = START + 60.0

    # then: the retries did not add to the count: it fits once that one request fades out
    assert refused == [59] * 5
    assert limit.take(who="user:1", rate="1/min") == 1
    clock.now = START + 61.0
    assert limit.take(who="user:1", rate="1/min") is None


def test_a_hit_given_back_frees_its_place_and_never_goes_below_zero(
    limit: SlidingWindowLimit, clock: Clock
):
    # given: the rate spent
    assert limit.take(who="user:1", rate="1/min") is None
    assert limit.take(who="user:1", rate="1/min") == 60

    # when: the write it allowed did not happen after all; then more given back than taken
    limit.give_back(who="user:1", rate="1/min")
    for _ in range(3):
        limit.give_back(who="user:2", rate="1/min")

    # then: one more fits, then none; the other client's budget is as it was
    assert limit.take(who="user:1", rate="1/min") is None
    assert limit.take(who="user:1", rate="1/min") == 60
    assert limit.take(who="user:2", rate="1/min") is None
    assert limit.take(who="user:2", rate="1/min") == 60
