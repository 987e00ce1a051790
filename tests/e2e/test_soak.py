"""The soak test, short: `python -m bench.soak --quick` on its own live stack, and its checker."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import soak

BASE_DIR = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(
    r"^soak: (?P<lost>\d+) lost, (?P<dup>\d+) duplicated \((?P<clients>\d+) clients, "
    r"(?P<rooms>\d+) rooms, (?P<messages>\d+) messages, (?P<jobs>\d+) jobs, "
    r"(?P<reconnects>\d+) reconnects",
    re.MULTILINE,
)


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_quick_soak_loses_and_repeats_nothing():
    # given: its own SQLite, Redis, uvicorn + Daphne and a Celery worker, all on loopback
    # when: 60 clients in 8 rooms chat and run jobs for 45 s, disconnecting at random
    run = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--quick"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )

    # then
    report = f"{run.stdout}\n--- stderr\n{run.stderr[-4000:]}"
    assert run.returncode == 0, report
    summary = SUMMARY.search(run.stdout)
    assert summary is not None, report
    assert (summary["lost"], summary["dup"]) == ("0", "0"), report
    # The run did what it checks: messages, jobs and reconnections happened.
    assert int(summary["messages"]) > 0, report
    assert int(summary["jobs"]) > 0, report
    assert int(summary["reconnects"]) > 0, report
    assert "soak: PASS" in run.stdout


class FakeRest:
    """The REST calls `soak.check` makes, answered from a fixed history."""

    def __init__(self, history: dict[str, list[dict[str, Any]]]) -> None:
        self.messages = history

    async def history(self, slug: str, after: int, upto: int | None) -> list[dict[str, Any]]:
        return [m for m in self.messages[slug] if m["seq"] > after]

    async def retrying(self, method: str, path: str, *args: Any, **kw: Any) -> tuple[int, Any]:
        return 200, {"status": "succeeded"}


def message(room: str, seq: int) -> dict[str, Any]:
    return {"room": room, "seq": seq, "id": 1000 + seq, "client_id": f"c{seq}"}


def plan() -> soak.Plan:
    return soak.Plan(
        clients=1,
        rooms=1,
        duration=60,
        warmup=10,
        post_every=10,
        signed_in=0,
        job_every=60,
        session=40,
        abort_share=0.4,
        away_long_share=0.1,
        settle=30,
        late_share=0.1,
    )


async def test_check_counts_a_missing_and_a_repeated_message():
    # given: room r holds seqs 1..3; a client holds 1 twice and 3, never 2
    rest = FakeRest({"r": [message("r", s) for s in (1, 2, 3)]})
    run = soak.Soak(plan(), {}, rest, random.Random(1))  # type: ignore[arg-type]
    client = soak.Client(run, 0, ["r"], None)
    for seq in (1, 1, 3):
        client.record("r", seq, 1000 + seq)
    outcome = soak.Outcome()

    # when
    await soak.check(run, [client], ["r"], outcome)

    # then
    assert (outcome.lost, outcome.duplicated, outcome.lost_pairs) == (1, 1, 1)
    assert outcome.messages == 3


async def test_check_counts_a_send_stored_twice_or_never_acknowledged():
    # given: client_id c1 was acknowledged, c2 never was; the history holds c1 twice
    history = [message("r", 1), {**message("r", 2), "client_id": "c1"}]
    run = soak.Soak(plan(), {}, FakeRest({"r": history}), random.Random(1))  # type: ignore[arg-type]
    client = soak.Client(run, 0, ["r"], None)
    client.sends = {"c1": soak.Send("r", "a", seq=1), "c2": soak.Send("r", "b")}
    for seq in (1, 2):
        client.record("r", seq, 1000 + seq)
    outcome = soak.Outcome()

    # when
    await soak.check(run, [client], ["r"], outcome)

    # then
    assert (outcome.lost, outcome.duplicated) == (0, 0)
    assert outcome.sends_doubled == 1
    assert outcome.sends_unanswered == 1
    assert outcome.sends_missing == 1


def test_job_order_allows_two_interleaved_subscriptions_but_not_a_reversal_within_one():
    # jobs:mine and job:<id> both deliver the job's updates; each must be in job.seq order.
    assert soak.longest_non_increasing([1, 2, 1, 3, 2, 4, 3]) == 2  # two increasing streams
    assert soak.longest_non_increasing([1, 3, 2, 1]) == 3  # one stream went back
    assert soak.longest_non_increasing([]) == 0
