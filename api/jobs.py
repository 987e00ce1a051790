"""`/api/jobs/` and `/api/job-kinds/`: enqueue with a countdown, poll, list, log, cancel."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.errors import JobError, JobErrorCode
from jobs.kinds import export_path
from jobs.models import Job, JobStatus
from jobs.registry import kinds_all
from jobs.selectors import LOG_PAGE_MAX, job_get, job_list, job_log, job_state
from jobs.services import job_cancel, job_enqueue
from realtime.events import job_channel

from .errors import ErrorSerializer


class JobProgressSerializer(serializers.Serializer):
    current = serializers.IntegerField()
    total = serializers.IntegerField()
    message = serializers.CharField()


class JobErrorSerializer(serializers.Serializer):
    type = serializers.CharField()
    message = serializers.CharField()


class JobSerializer(serializers.Serializer):
    """A job's full state (also what `job.update` frames carry)."""

    id = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    params = serializers.DictField()
    progress = JobProgressSerializer()
    result = serializers.DictField(allow_null=True)
    error = JobErrorSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    run_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    attempts = serializers.IntegerField()
    seq = serializers.IntegerField(
        help_text="Counts the job's changes; a later state has a larger seq"
    )
    cancel_requested = serializers.BooleanField()
    log_lines = serializers.IntegerField()

    def to_representation(self, instance: Job) -> dict[str, Any]:
        return job_state(instance)


class EnqueuedSerializer(JobSerializer):
    status_url = serializers.CharField()
    channel = serializers.CharField(help_text="Subscribe to it on /ws/ for live updates")

    def to_representation(self, instance: Job) -> dict[str, Any]:
        request = self.context["request"]
        return {
            **job_state(instance),
            "status_url": request.build_absolute_uri(f"/api/jobs/{instance.pk}/"),
            "channel": job_channel(str(instance.pk)),
        }


class EnqueueSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=64)
    params = serializers.DictField(required=False, default=dict)
    countdown = serializers.FloatField(
        required=False, min_value=0, help_text="Seconds to wait before running"
    )
    eta = serializers.DateTimeField(required=False, help_text="When to run (instead of countdown)")


class JobKindSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    params_schema = serializers.DictField(help_text="JSON Schema of `params`")


class LogLineSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    line = serializers.CharField()
    created_at = serializers.DateTimeField()


class LogPageSerializer(serializers.Serializer):
    results = LogLineSerializer(many=True)
    log_lines = serializers.IntegerField(help_text="How many lines the job has written so far")


class LogQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=LOG_PAGE_MAX, default=100)


def _owner(request: Request) -> User:
    assert isinstance(request.user, User)  # IsAuthenticated ran first
    return request.user


def _job_or_404(request: Request, job_id: Any) -> Job:
    job = job_get(job_id=job_id, viewer=_owner(request))
    if job is None:
        raise JobError(JobErrorCode.NOT_FOUND, "No such job.")
    return job


class JobKindListView(APIView):
    """The kinds a client may enqueue, each with the JSON Schema of its params."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="job_kinds_list", tags=["jobs"], responses=JobKindSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        return Response(
            [
                {"name": k.name, "title": k.title, "params_schema": k.params_schema()}
                for k in kinds_all()
            ]
        )


@extend_schema(tags=["jobs"])
class JobListView(ListAPIView):
    """My jobs, newest first; enqueue one with POST."""

    permission_classes = [IsAuthenticated]
    serializer_class = JobSerializer

    def get_queryset(self) -> QuerySet[Job]:
        status_filter = self.request.query_params.get("status")
        if status_filter and status_filter not in JobStatus.values:
            raise JobError(JobErrorCode.INVALID_PARAMS, f"Unknown status {status_filter!r}.")
        return job_list(owner=_owner(self.request), status=status_filter)

    @extend_schema(
        operation_id="jobs_list",
        parameters=[OpenApiParameter("status", str, enum=JobStatus.values)],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="jobs_enqueue",
        request=EnqueueSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                location=OpenApiParameter.HEADER,
                description="A retried POST with the same key returns the same job",
            )
        ],
        responses={202: EnqueuedSerializer, 400: ErrorSerializer, 503: ErrorSerializer},
        examples=[
            OpenApiExample(
                "The tutorial's task in 2 seconds",
                value={
                    "kind": "demo.sleep",
                    "params": {"steps": 3, "max_seconds": 1},
                    "countdown": 2,
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        incoming = EnqueueSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 128:
            raise JobError(JobErrorCode.INVALID_PARAMS, "Idempotency-Key is longer than 128.")
        job, _created = job_enqueue(
            owner=_owner(request), idempotency_key=key, **incoming.validated_data
        )
        body = EnqueuedSerializer(job, context={"request": request}).data
        return Response(
            body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["status_url"]}
        )


class JobDetailView(APIView):
    """One job's state, for polling. Another user's job is as unknown as a made-up id."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="jobs_retrieve",
        tags=["jobs"],
        responses={200: JobSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, job_id: str) -> Response:
        return Response(JobSerializer(_job_or_404(request, job_id)).data)


class JobCancelView(APIView):
    """Cancel a job: waiting ones never start, a running one stops at its next report."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="jobs_cancel",
        tags=["jobs"],
        request=None,
        responses={200: JobSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_cancel(job=_job_or_404(request, job_id))
        return Response(JobSerializer(job).data)


class JobDownloadView(APIView):
    """The file a finished `room.export` wrote; only its owner (or staff) can read it."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="jobs_download",
        tags=["jobs"],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request, job_id: str) -> FileResponse:
        job = _job_or_404(request, job_id)
        fmt = (job.result or {}).get("format")
        path = export_path(job, str(fmt))
        if (
            job.kind != "room.export"
            or job.status != "succeeded"
            or not default_storage.exists(path)
        ):
            raise JobError(JobErrorCode.NOT_FOUND, "This job has no file.")
        content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return FileResponse(
            default_storage.open(path, "rb"),
            as_attachment=True,
            filename=f"{job.params.get('room', 'room')}-{job.pk}.{fmt}",
            content_type=content_type,
        )


class JobLogView(APIView):
    """The lines a job wrote, after a line number."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="jobs_log",
        tags=["jobs"],
        parameters=[
            OpenApiParameter("after", int, description="Only lines numbered after this"),
            OpenApiParameter("limit", int, description=f"At most this many (1-{LOG_PAGE_MAX})"),
        ],
        responses={200: LogPageSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, job_id: str) -> Response:
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        job = _job_or_404(request, job_id)
        lines = job_log(job=job, **query.validated_data)
        return Response(
            {"results": LogLineSerializer(lines, many=True).data, "log_lines": job.log_lines}
        )
