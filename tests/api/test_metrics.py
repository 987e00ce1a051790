"""`/metrics`: who may read it, and what a scripted scenario on live servers makes it show."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.http import Http404
from django.test import RequestFactory, override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from api.metrics import metrics_view
from jobs.models import Job
from jobs.selectors import jobs_unfinished_counts
from realtime.kernel import metrics
from tests.factories import RoomFactory
from tests.support.jobs import finished
from tests.support.processes import http_json
from tests.support.ws import WsClient

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> Samples:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "header", "answered"),
    [
        ("127.0.0.1", "", True),
        ("::1", "", True),
        ("10.1.2.3", "", False),
        ("10.1.2.3", "Bearer wrong", False),
        ("10.1.2.3", "Bearer s3cret-token", True),
    ],
)
def test_metrics_answer_loopback_and_the_token_holder_only(address, header, answered):
    request = RequestFactory().get("/metrics", REMOTE_ADDR=address, HTTP_AUTHORIZATION=header)

    with override_settings(METRICS_TOKEN="s3cret-token"):
        if answered:
            assert metrics_view(request).status_code == 200
        else:
            with pytest.raises(Http404):
                metrics_view(request)


@pytest.mark.django_db
def test_with_no_token_set_no_bearer_opens_it():
    request = RequestFactory().get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer ")

    with override_settings(METRICS_TOKEN=""), pytest.raises(Http404):
        metrics_view(request)


@pytest.mark.django_db(transaction=True)
async def test_a_scripted_scenario_shows_in_the_scraped_metrics(live_server_url, worker, user):
    room = await database_sync_to_async(RoomFactory.create)()
    token = await database_sync_to_async(lambda: str(Token.objects.create(user=user).key))()
    auth = {"Authorization": f"Token {token}"}
    before = scrape(live_server_url)

    # Two sockets in one room; three posts; a frame of no known type; a flood of pings.
    alice, bob = await WsClient.open(live_server_url), await WsClient.open(live_server_url)
    for client in (alice, bob):
        await client.request(type="subscribe", channel=f"room:{room.slug}")
    for n in range(3):
        await alice.request(type="chat.send", room=room.slug, body=f"hello {n}")
    await alice.send(type="no.such.frame")
    await alice.expect("error")
    for n in range(60):
        await bob.send(type="ping", ref=n)
    await bob.drain(0.5)
    await bob.close()
    # REST: three listings, one unknown path; a job, run by the worker.
    for _ in range(3):
        http_json(f"{live_server_url}/api/rooms/", headers=auth)
    http_json(f"{live_server_url}/api/no-such-thing/", headers=auth)
    status, job, _ = http_json(
        f"{live_server_url}/api/jobs/",
        method="POST",
        body={"kind": "demo.sleep", "params": {"steps": 1, "max_seconds": 0}},
        headers=auth,
    )
    assert status == 202
    await database_sync_to_async(finished)(job["id"])
    await asyncio.sleep(1.5)  # the server's counts reach their metric once a second
    after = scrape(live_server_url)
    await alice.close()

    assert grew(before, after, "switchboard_frames_in_total", type="chat.send") == 3
    assert grew(before, after, "switchboard_frames_in_total", type="other") == 1
    assert grew(before, after, "switchboard_frames_in_total", type="ping") >= 1
    assert grew(before, after, "switchboard_frames_out_total") >= 3 * 2 + 2  # to both sockets
    assert grew(before, after, "switchboard_fanout_lag_seconds_count") >= 3
    assert grew(before, after, "switchboard_rate_limited_total", rule="socket_frames") >= 1
    assert grew(before, after, "switchboard_sockets_open") == 1  # alice's, still open then
    assert grew(before, after, "switchboard_sockets_closed_total", code="1000") >= 1
    assert value(after, "switchboard_subscriptions", kind="room") >= 1
    rooms = {"route": "api/rooms/", "method": "GET", "status": "200"}
    assert grew(before, after, "switchboard_http_request_duration_seconds_count", **rooms) == 3
    unknown = {"route": "unmatched", "status": "404"}
    assert grew(before, after, "switchboard_http_request_duration_seconds_count", **unknown) == 1
    ran = {"kind": "demo.sleep", "status": "succeeded"}
    assert grew(before, after, "switchboard_jobs_finished_total", **ran) == 1
    assert grew(before, after, "switchboard_job_duration_seconds_count", **ran) == 1
    assert (
        grew(before, after, "switchboard_job_start_lateness_seconds_count", kind="demo.sleep") == 1
    )
    assert value(after, "switchboard_broker_up") == 1
    assert value(after, "switchboard_workers_up") >= 1


def test_the_grafana_dashboard_charts_only_metrics_the_stack_exports():
    dashboard = json.loads((Path(__file__).parents[2] / "docs/grafana-dashboard.json").read_text())
    exported = {
        name
        for family in REGISTRY.collect()
        if family.name.startswith(metrics.NAMESPACE)
        for name in (family.name, f"{family.name}_total")
    }
    exported |= {f"{metrics.NAMESPACE}_{name}" for name in ("jobs", "broker_up", "workers_up")}

    charted = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"switchboard_[a-z_]+", target["expr"])
    }
    assert charted
    assert charted <= exported


@pytest.mark.django_db
def test_unfinished_jobs_are_counted_by_kind_and_state_in_one_query(
    user, django_assert_num_queries
):
    for status in ("queued", "queued", "running", "succeeded"):
        Job.objects.create(owner=user, kind="demo.sleep", status=status)
    Job.objects.create(owner=user, kind="demo.stream", status="scheduled")

    with django_assert_num_queries(1):
        counts = jobs_unfinished_counts()

    assert counts == {
        ("demo.sleep", "queued"): 2,
        ("demo.sleep", "running"): 1,
        ("demo.stream", "scheduled"): 1,
    }
