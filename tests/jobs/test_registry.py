"""The public decorator's checks, and a retry policy's waits."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from jobs import Retry, TimeLimitExceeded, job_kind
from jobs.registry import WorkerLost


class NoParams(BaseModel):
    pass


def test_the_waits_grow_by_the_factor_up_to_the_cap_less_at_most_the_jitter():
    policy = Retry(attempts=10, backoff=1, factor=3, max_backoff=20, jitter=0.25)

    waits = [[policy.delay(n) for _ in range(200)] for n in (1, 2, 3, 4)]

    for full, drawn in zip([1, 3, 9, 20], waits, strict=True):
        assert all(full * 0.75 <= wait <= full for wait in drawn), (full, min(drawn), max(drawn))
        assert max(drawn) - min(drawn) > full * 0.1  # spread: not all at once
    assert Retry(backoff=5, jitter=0).delay(1) == 5


def test_a_policy_retries_only_the_errors_it_names():
    policy = Retry(attempts=3, on=(ConnectionError, TimeLimitExceeded))

    assert policy.retries(ConnectionResetError)  # a subclass
    assert policy.retries(TimeLimitExceeded)
    assert not policy.retries(ValueError)
    assert not policy.retries(WorkerLost)
    assert Retry().retries(WorkerLost)  # the default names every Exception...
    assert Retry().attempts == 1  # ...but gives no second attempt


@pytest.mark.parametrize(
    "make",
    [
        lambda: Retry(attempts=0),
        lambda: Retry(attempts=21),
        lambda: Retry(jitter=1.5),
        lambda: Retry(factor=0.5),
        lambda: job_kind("Not.Dotted-Lowercase", "x", NoParams),
        lambda: job_kind("tests.limits", "x", NoParams, soft_time_limit=5, time_limit=5),
        lambda: job_kind("tests.limits", "x", NoParams, time_limit=0),
    ],
    ids=["no-attempt", "too-many", "jitter", "factor", "name", "soft-not-below-hard", "zero"],
)
def test_a_kind_or_policy_that_makes_no_sense_is_refused_when_declared(make):
    with pytest.raises(ValueError, match=r"."):
        make()


def test_a_kind_name_is_registered_once():
    with pytest.raises(ValueError, match="registered twice"):
        job_kind("demo.sleep", "again", NoParams)(lambda job, params, reporter: None)
