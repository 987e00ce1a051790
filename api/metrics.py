"""`/metrics` for Prometheus, and the REST latency it shows.

Never public by default: it answers callers from METRICS_ALLOWED_NETWORKS (loopback unless
set) and callers that send `Authorization: Bearer <METRICS_TOKEN>` (when a token is set);
anyone else gets 404, as for a path that does not exist. What it shows is listed in the
README's "Metrics".
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.health import broker_reachable, queue_workers
from jobs.selectors import jobs_unfinished_counts
from realtime.kernel import metrics

# How long a scrape waits for the broker's connection, and for workers to answer.
BROKER_TIMEOUT = 1
PING_TIMEOUT = 0.5


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        raise Http404
    read_now = CollectorRegistry(auto_describe=False)
    read_now.register(StackCollector())
    body = generate_latest(metrics.registry()) + generate_latest(read_now)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _networks())


def _networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(item, strict=False) for item in settings.METRICS_ALLOWED_NETWORKS]


class StackCollector(Collector):
    """What is read at each scrape rather than counted: unfinished jobs by kind and state,
    whether the broker takes a connection, and how many workers of this stack's queue answer."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            f"{metrics.NAMESPACE}_jobs",
            "Waiting and running jobs now, by kind and state",
            labels=["kind", "status"],
        )
        for (kind, status), count in sorted(jobs_unfinished_counts().items()):
            jobs.add_metric([kind, status], count)
        yield jobs
        with ThreadPoolExecutor(2) as pool:
            broker = pool.submit(_broker_up)
            workers = pool.submit(_workers_answering)
            yield _gauge("broker_up", "1 if the Celery broker takes a connection", broker.result())
            yield _gauge(
                "workers_up", "Celery workers of this stack's queue that answered", workers.result()
            )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{metrics.NAMESPACE}_{name}", documentation, value=value)


def _broker_up() -> int:
    return int(broker_reachable(BROKER_TIMEOUT))


def _workers_answering() -> int:
    try:
        return queue_workers(PING_TIMEOUT)
    except Exception:
        return 0


class RequestMetricsMiddleware:
    """Each request's latency, by route (its URL pattern, not its path), method and status."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        # A path no route serves is one label, whatever the path (`api/`'s catch-all included).
        if match is None or match.url_name == "unknown-endpoint":
            route = "unmatched"
        else:
            route = match.route
        metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response
