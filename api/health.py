"""Liveness (`/api/health/`) and readiness (`/api/health/ready/`) of the whole stack."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
from typing import Any

from asgiref.sync import async_to_sync
from celery import current_app as celery_app
from channels.layers import get_channel_layer
from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from health_check.base import HealthCheck, HealthCheckResult
from health_check.checks import Database
from health_check.contrib.redis import Redis
from health_check.exceptions import ServiceUnavailable
from kombu.exceptions import OperationalError
from redis.asyncio import Redis as RedisClient
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.kernel import lifecycle, rabbitmq_layer


@dataclasses.dataclass
class Broker(HealthCheck):
    """Opens a connection to the Celery broker (Redis or RabbitMQ)."""

    timeout = datetime.timedelta(seconds=3)

    def run(self) -> None:
        if not broker_reachable(self.timeout.seconds):
            raise ServiceUnavailable("Broker unreachable")


def broker_reachable(timeout: int) -> bool:
    """Whether the Celery broker takes a connection within `timeout` seconds."""
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except (OSError, OperationalError):
        return False
    return True


@dataclasses.dataclass
class RabbitMQLayer(HealthCheck):
    """Opens a connection to the channel layer's RabbitMQ (`CHANNEL_LAYER=rabbitmq`)."""

    timeout = datetime.timedelta(seconds=3)

    async def run(self) -> None:
        try:
            await rabbitmq_layer.probe(settings.CHANNEL_LAYER_URL, self.timeout.seconds)
        except Exception as exc:  # refused, timed out, or closed by the server (credentials)
            raise ServiceUnavailable("Channel layer's RabbitMQ unreachable") from exc


class _Found(Exception):
    """A worker of this stack's queue answered: stop waiting for the others."""


def queue_workers(timeout: float, *, first: bool = False) -> int:
    """The workers that answer within `timeout` seconds and consume this stack's queue (with
    `first`, 1 as soon as one does); OSError or OperationalError when the broker is away.

    Every worker on the broker answers a ping, those of other stacks sharing it (another
    queue) too, so a ping's answers say nothing of ours: this asks every worker for its queues.
    """
    queue = celery_app.conf.task_default_queue
    found = 0

    def answered(reply: dict[str, Any]) -> None:
        nonlocal found
        for queues in reply.values():
            if any(q.get("name") == queue for q in queues or ()):
                found += 1
                if first:
                    raise _Found

    with contextlib.suppress(_Found):
        celery_app.control.broadcast(
            "active_queues", reply=True, timeout=timeout, callback=answered
        )
    return found


@dataclasses.dataclass
class QueueWorker(HealthCheck):
    """A worker that consumes this stack's queue answers (`queue_workers`), at the first one."""

    timeout = datetime.timedelta(seconds=2)

    def run(self) -> None:
        try:
            found = queue_workers(self.timeout.total_seconds(), first=True)
        except (OSError, OperationalError) as exc:
            raise ServiceUnavailable("Broker unreachable") from exc
        if not found:
            queue = celery_app.conf.task_default_queue
            raise ServiceUnavailable(f"No worker consumes the queue {queue}")


@dataclasses.dataclass
class LayerRoundTrip(HealthCheck):
    """Sends a message through the channel layer to a channel of its own and receives it: what
    every live update does, end to end (its `ms` is the round trip's lag)."""

    timeout = datetime.timedelta(seconds=3)

    async def run(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            raise ServiceUnavailable("No channel layer configured")
        try:
            async with asyncio.timeout(self.timeout.total_seconds()):
                channel = await layer.new_channel("health.")
                await layer.send(channel, {"type": "health.ping"})
                await layer.receive(channel)
        except Exception as exc:
            raise ServiceUnavailable("Channel layer round trip failed") from exc


def readiness_checks() -> dict[str, HealthCheck]:
    checks: dict[str, HealthCheck] = {
        "database": Database(),
        "redis": Redis(client_factory=lambda: RedisClient.from_url(settings.REDIS_URL)),
        "broker": Broker(),
        "worker": QueueWorker(),
    }
    if settings.CHANNEL_LAYER == "rabbitmq":  # else the layer is the Redis checked above
        checks["channel_layer"] = RabbitMQLayer()
    else:
        checks["layer_round_trip"] = LayerRoundTrip()
    return checks


async def _run(checks: dict[str, HealthCheck]) -> dict[str, HealthCheckResult]:
    results = await asyncio.gather(*(check.get_result() for check in checks.values()))
    return dict(zip(checks, results, strict=True))


CheckSerializer = inline_serializer(
    "ReadinessCheck",
    {
        "ok": serializers.BooleanField(),
        "detail": serializers.CharField(),
        "ms": serializers.FloatField(),
    },
)


ReadinessSerializer = inline_serializer(
    "Readiness",
    {
        "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
        "checks": serializers.DictField(child=CheckSerializer),
    },
)


class LivenessView(APIView):
    """The process is up and serving requests; touches no other service."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(
        operation_id="health_live",
        summary="Liveness",
        tags=["health"],
        responses=inline_serializer("Liveness", {"status": serializers.CharField()}),
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadinessView(APIView):
    """Database, Redis, broker and a live Celery worker, each reported; 503 if any is down."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(
        operation_id="health_ready",
        summary="Readiness of the whole stack",
        tags=["health"],
        responses={200: ReadinessSerializer, 503: ReadinessSerializer},
    )
    def get(self, request: Request) -> Response:
        results = async_to_sync(_run)(readiness_checks())
        checks: dict[str, Any] = {
            name: {
                "ok": result.error is None,
                "detail": "ok" if result.error is None else str(result.error),
                "ms": round(result.time_taken * 1000, 1),
            }
            for name, result in results.items()
        }
        if lifecycle.draining():  # going away: a load balancer should send nothing new
            checks["serving"] = {"ok": False, "detail": "draining for a restart", "ms": 0.0}
        ok = all(check["ok"] for check in checks.values())
        return Response(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status=200 if ok else 503,
            headers={"Cache-Control": "no-store"},
        )
