"""`/api/jobs/` and `/api/job-kinds/`: enqueue with a countdown, poll, list, log, cancel, retry."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from pydantic import BaseModel, Field
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.errors import JobError, JobErrorCode
from jobs.frames import job_state_body
from jobs.kinds import export_path
from jobs.models import Job, JobStatus
from jobs.registry import JobKind, kinds_all
from jobs.selectors import (
    LOG_PAGE_MAX,
    OUTPUT_PAGE_MAX,
    job_attempts,
    job_get,
    job_list,
    job_log,
    job_output,
    job_output_first,
    job_readable,
    job_shares,
)
from jobs.services import (
    SHARE_MAX_SECONDS,
    SHARE_MIN_SECONDS,
    job_cancel,
    job_enqueue,
    job_retry,
    job_share_create,
    job_share_revoke,
)
from realtime.kernel import events
from realtime.kernel.listing import Listing
from realtime.kernel.names import job_channel

from .declared import DEFS, DeclaredSerializer, openapi_schema
from .direct import DirectReads
from .fields import (
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    valid_data,
    valid_query,
)
from .pagination import PageNumberPagination, page_body
from .schema import domain_errors


class JobSerializer(DeclaredSerializer):
    """A job's full state (also what `job.update` frames carry)."""

    model: ClassVar[type[events.JobState]] = events.JobState
    component = "Job"

    def declare(self, instance: Job) -> dict[str, Any]:
        return job_state_body(instance)


class Enqueued(events.JobState):
    """A job just enqueued, and where to follow it."""

    status_url: str
    channel: str = Field(description="Subscribe to it on /ws/ for live updates")


class EnqueuedSerializer(JobSerializer):
    model = Enqueued
    component = "Enqueued"

    def declare(self, instance: Job) -> dict[str, Any]:
        request = self.context["request"]
        return {
            **job_state_body(instance),
            "status_url": request.build_absolute_uri(f"/api/jobs/{instance.pk}/"),
            "channel": job_channel(str(instance.pk)),
        }


# The schema names the longest countdown; the service checks it, so a refusal carries its
# domain code (`invalid_schedule`), as one of an unknown kind does (`unknown_kind`).
@extend_schema_field(
    {"type": "number", "format": "double", "minimum": 0, "maximum": settings.JOBS_MAX_COUNTDOWN}
)
class CountdownField(StrictFloatField):
    pass


class EnqueueSerializer(serializers.Serializer):
    kind = StrictCharField(max_length=64, help_text="One of `GET /api/job-kinds/`")
    params = serializers.DictField(
        required=False, default=dict, help_text="Valid against the kind's `params_schema`"
    )
    countdown = CountdownField(
        required=False, min_value=0, help_text="Seconds to wait before running"
    )
    eta = serializers.DateTimeField(
        required=False, help_text="When to run, instead of `countdown` (not both); not in the past"
    )


def _kind_enqueue_serializer(kind: JobKind) -> type[serializers.Serializer]:
    """The enqueue body of one kind, for the OpenAPI document: `kind` is its name and `params`
    its params' schema. Requests are read by `EnqueueSerializer`; the service checks params."""
    words = "".join(word.capitalize() for word in re.split(r"[._]", kind.name))
    # Subclasses: `extend_schema_field` marks the class it is given.
    name_field = extend_schema_field({"type": "string", "enum": [kind.name]})(
        type(f"{words}KindField", (StrictCharField,), {})
    )
    params_field = extend_schema_field(_inlined_schema(kind.params.model_json_schema()))(
        type(f"{words}ParamsField", (serializers.DictField,), {})
    )
    return type(
        f"Enqueue{words}",  # its component: `Enqueue{words}Request`
        (EnqueueSerializer,),
        {
            "kind": name_field(help_text=kind.title),
            "params": params_field(required=False, default=dict, help_text=kind.title),
            "__doc__": f"Enqueue a `{kind.name}` job: {kind.title}.",
        },
    )


def _inlined_schema(schema: dict[str, Any]) -> Any:
    """A pydantic JSON Schema with its `$defs` written in place, in OpenAPI 3.0 terms."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(DEFS):
            return inline(
                {**defs[ref.removeprefix(DEFS)], **{k: v for k, v in node.items() if k != "$ref"}}
            )
        return {key: inline(value) for key, value in node.items()}

    return openapi_schema(inline(schema))


ENQUEUE_REQUEST = PolymorphicProxySerializer(
    component_name="Enqueue",  # `EnqueueRequest`, a request's component
    serializers={kind.name: _kind_enqueue_serializer(kind) for kind in kinds_all()},
    resource_type_field_name="kind",
)


class RetryPolicySerializer(serializers.Serializer):
    attempts = serializers.IntegerField(help_text="Tries in all, the first included")
    backoff = serializers.FloatField(help_text="Seconds before the second try")
    factor = serializers.FloatField(help_text="Each later wait is this many times the one before")
    max_backoff = serializers.FloatField(help_text="The longest wait, in seconds")
    jitter = serializers.FloatField(
        help_text="Up to this fraction of a wait is taken off at random"
    )
    on = serializers.ListField(
        child=serializers.CharField(), help_text="The errors that are tried again"
    )


class JobKindSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    params_schema = serializers.DictField(help_text="JSON Schema of `params`")
    result_schema = serializers.DictField(
        allow_null=True, help_text="JSON Schema of `result` when the job succeeded, if declared"
    )
    retry = RetryPolicySerializer()
    soft_time_limit = serializers.FloatField(
        allow_null=True, help_text="Seconds after which `TimeLimitExceeded` is raised in the job"
    )
    time_limit = serializers.FloatField(help_text="Seconds after which an attempt is stopped")
    cancel_grace = serializers.FloatField(
        help_text="Seconds a cancelled job has to stop by itself before it is stopped"
    )


class AttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=[JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]
    )
    error = serializers.DictField(allow_null=True, help_text="`{type, message}` of a failed one")
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class LogLineSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    line = serializers.CharField()
    created_at = serializers.DateTimeField()


class LogPageSerializer(serializers.Serializer):
    results = LogLineSerializer(many=True)
    log_lines = serializers.IntegerField(help_text="How many lines the job has written so far")


class LogQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0, default=0, help_text="Only lines numbered after this"
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=LOG_PAGE_MAX, default=100, help_text="At most this many lines"
    )


class OutputQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0, default=0, help_text="Only chunks with a `seq` after this"
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=OUTPUT_PAGE_MAX, default=500, help_text="At most this many chunks"
    )


class OutputPage(BaseModel):
    """A page of a job's output chunks, in `seq` order, as `job.output` frames carry them."""

    results: list[events.JobOutputChunk]
    output_chunks: int = Field(description="Chunks written so far (the last `seq`)")
    first_seq: int = Field(
        description="The oldest chunk still kept; older ones were dropped (JOBS_OUTPUT_KEEP)"
    )


class OutputPageSerializer(DeclaredSerializer):
    model = OutputPage
    component = "OutputPage"

    def declare(self, instance: dict[str, Any]) -> dict[str, Any]:
        return instance


class JobListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=JobStatus.choices, required=False, help_text="Only jobs in this status"
    )


_EXAMPLE_JOB: dict[str, Any] = {
    "id": "6f1c2e1a-3b4d-4c5e-8f90-1a2b3c4d5e6f",
    "kind": "demo.sleep",
    "status": "scheduled",
    "params": {"steps": 3, "max_seconds": 1.0},
    "progress": {"current": 0, "total": 0, "message": ""},
    "result": None,
    "error": None,
    "created_at": "2026-01-05T10:00:00.000Z",
    "run_at": "2026-01-05T10:00:02.000Z",
    "started_at": None,
    "finished_at": None,
    "attempts": 0,
    "seq": 1,
    "cancel_requested": False,
    "log_lines": 0,
}


def _owner(request: Request) -> User:
    assert isinstance(request.user, User)  # IsAuthenticated ran first
    return request.user


def _job_or_404(request: Request, job_id: Any) -> Job:
    job = job_get(job_id=job_id, viewer=_owner(request))
    if job is None:
        raise JobError(JobErrorCode.NOT_FOUND, "No such job.")
    return job


SHARE_PARAMETER = OpenApiParameter(
    "share",
    str,
    description=(
        "A share link's token (`POST /api/jobs/{id}/shares/`): read this job without signing in"
    ),
)


class SignedInOrShare(BasePermission):
    """Signed in, or holding a share link's token (`?share=`): the view reads the job through
    `_readable_job`, which lets a token read only its own job."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) or bool(
            request.query_params.get("share")
        )


def _readable_job(request: Request, job_id: Any) -> Job:
    """The job, for its owner (or staff), or for the holder of a live share link to it."""
    viewer = _owner(request) if request.user.is_authenticated else None
    found = job_readable(
        job_id=job_id, viewer=viewer, share_token=request.query_params.get("share")
    )
    if found is None:
        raise JobError(JobErrorCode.NOT_FOUND, "No such job.")
    return found.job


def _job_bodies(jobs: list[Job]) -> list[dict[str, Any]]:
    return [job_state_body(job) for job in jobs]


class JobKindListView(APIView):
    """The kinds a client may enqueue, each with the JSON Schema of its params."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="job_kinds_list",
        summary="List the job kinds",
        tags=["jobs"],
        responses=JobKindSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return Response([_kind_body(kind) for kind in kinds_all()])


def _kind_body(kind: JobKind) -> dict[str, Any]:
    retry = kind.retry
    return {
        "name": kind.name,
        "title": kind.title,
        "params_schema": kind.params_schema(),
        "result_schema": kind.result_schema(),
        "retry": {
            "attempts": retry.attempts,
            "backoff": retry.backoff,
            "factor": retry.factor,
            "max_backoff": retry.max_backoff,
            "jitter": retry.jitter,
            "on": [error.__name__ for error in retry.on],
        },
        "soft_time_limit": kind.soft_time_limit or settings.JOBS_SOFT_TIME_LIMIT or None,
        "time_limit": kind.time_limit or settings.JOBS_TIME_LIMIT,
        "cancel_grace": (
            kind.cancel_grace if kind.cancel_grace is not None else settings.JOBS_CANCEL_GRACE
        ),
    }


@extend_schema(tags=["jobs"])
class JobListView(DirectReads, ListAPIView):
    """My jobs, newest first; enqueue one with POST."""

    permission_classes = [IsAuthenticated]
    serializer_class = JobSerializer
    pagination_class = PageNumberPagination

    def read(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        return page_body(self, self.get_queryset(), _job_bodies)

    def get_queryset(self) -> Listing[Job]:  # type: ignore[override]  # a page per query
        query = valid_query(JobListQuerySerializer, self.request)
        return job_list(owner=_owner(self.request), status=query.get("status"))

    @extend_schema(
        operation_id="jobs_list",
        summary="List my jobs",
        parameters=[JobListQuerySerializer],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="jobs_enqueue",
        summary="Enqueue a job (countdown or eta)",
        description=(
            "Writes the job, then hands it to the broker to run after `countdown` seconds (or at "
            "`eta`). Answers 202 with the job, its `status_url` (also in `Location`) to poll and "
            "its socket `channel`. A retried POST with the same `Idempotency-Key` returns the "
            "same job; one the broker refused (503 `broker_unavailable`) is queued again, and "
            "then counts as a new job would. Enqueues are rate limited per user (429 "
            "`rate_limited`), and a user may have at most `JOBS_MAX_ACTIVE_PER_USER` unfinished "
            "jobs (429 `too_many_active_jobs`); both answer with `Retry-After`."
        ),
        request=ENQUEUE_REQUEST,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "maxLength": 128},
                location=OpenApiParameter.HEADER,
                description="A retried POST with the same key returns the same job",
            ),
            OpenApiParameter(
                "Location",
                str,
                location=OpenApiParameter.HEADER,
                response=[202],
                description="The job's status URL (`status_url`), to poll",
            ),
        ],
        responses={
            202: EnqueuedSerializer,
            **domain_errors(
                JobErrorCode.UNKNOWN_KIND,
                JobErrorCode.INVALID_PARAMS,
                JobErrorCode.INVALID_SCHEDULE,
                JobErrorCode.TOO_MANY_ACTIVE_JOBS,
                JobErrorCode.RATE_LIMITED,
                JobErrorCode.BROKER_UNAVAILABLE,
            ),
        },
        examples=[
            OpenApiExample(
                "The tutorial's task in 2 seconds",
                value={
                    "kind": "demo.sleep",
                    "params": {"steps": 3, "max_seconds": 1},
                    "countdown": 2,
                },
                request_only=True,
            ),
            OpenApiExample(
                "Scheduled",
                response_only=True,
                status_codes=[202],
                value={
                    **_EXAMPLE_JOB,
                    "status_url": f"http://127.0.0.1:8000/api/jobs/{_EXAMPLE_JOB['id']}/",
                    "channel": f"job:{_EXAMPLE_JOB['id']}",
                },
            ),
        ],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        incoming = valid_data(EnqueueSerializer, request.data)
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 128:
            raise JobError(JobErrorCode.INVALID_PARAMS, "Idempotency-Key is longer than 128.")
        job, _created = job_enqueue(owner=_owner(request), idempotency_key=key, **incoming)
        body = EnqueuedSerializer(job, context={"request": request}).data
        return Response(
            body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["status_url"]}
        )


class JobDetailView(DirectReads):
    """One job's state, for polling. Another user's job is as unknown as a made-up id."""

    permission_classes = [SignedInOrShare]

    def read(self, request: Request, job_id: str) -> Any:
        return job_state_body(_readable_job(request, job_id))

    @extend_schema(
        operation_id="jobs_retrieve",
        parameters=[SHARE_PARAMETER],
        summary="Poll a job",
        tags=["jobs"],
        responses=JobSerializer,
        examples=[
            OpenApiExample(
                "Half way through",
                response_only=True,
                value={
                    **_EXAMPLE_JOB,
                    "status": "running",
                    "progress": {"current": 2, "total": 3, "message": "Slept 2 of 3 times"},
                    "started_at": "2026-01-05T10:00:02.004Z",
                    "attempts": 1,
                    "seq": 4,
                    "log_lines": 2,
                },
            ),
            OpenApiExample(
                "Done",
                response_only=True,
                value={
                    **_EXAMPLE_JOB,
                    "status": "succeeded",
                    "progress": {"current": 3, "total": 3, "message": "Slept 3 of 3 times"},
                    "result": {"steps": 3, "slept_seconds": 1.42},
                    "started_at": "2026-01-05T10:00:02.004Z",
                    "finished_at": "2026-01-05T10:00:03.912Z",
                    "attempts": 1,
                    "seq": 6,
                    "log_lines": 3,
                },
            ),
        ],
    )
    def get(self, request: Request, job_id: str) -> Response:
        return super().get(request, job_id=job_id)


class JobCancelView(APIView):
    """Cancel a job: waiting ones never start; a running one is `cancelling` until it stops at
    its next report, or is stopped when its kind's `cancel_grace` is over."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a job",
        tags=["jobs"],
        request=None,
        responses={200: JobSerializer, **domain_errors(JobErrorCode.NOT_CANCELLABLE)},
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_cancel(job=_job_or_404(request, job_id))
        return Response(JobSerializer(job).data)


class JobDownloadView(APIView):
    """The file a finished `room.export` wrote; only its owner (or staff) can read it."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="jobs_download",
        summary="Download an export's file",
        tags=["jobs"],
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
        },
        description="The export as an attachment: JSON lines or CSV, as the job was asked.",
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

    permission_classes = [SignedInOrShare]

    @extend_schema(
        operation_id="jobs_log",
        summary="Read a job's log lines",
        tags=["jobs"],
        parameters=[LogQuerySerializer, SHARE_PARAMETER],
        responses=LogPageSerializer,
    )
    def get(self, request: Request, job_id: str) -> Response:
        query = valid_query(LogQuerySerializer, request)
        job = _readable_job(request, job_id)
        lines = job_log(job=job, **query)
        return Response(
            {"results": LogLineSerializer(lines, many=True).data, "log_lines": job.log_lines}
        )


class JobRetryView(APIView):
    """Run a failed job again, under the same id, with its kind's attempts once more."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="jobs_retry",
        summary="Retry a failed job",
        description=(
            "Only the job's owner may, and only a `failed` job (409 `not_retryable`). It is "
            "queued again as a new job would be: within the enqueue rate and the cap on "
            "unfinished jobs. Its earlier attempts stay in `GET /api/jobs/{id}/attempts/`."
        ),
        tags=["jobs"],
        request=None,
        responses={
            202: JobSerializer,
            **domain_errors(
                JobErrorCode.NOT_RETRYABLE,
                JobErrorCode.NOT_JOB_OWNER,
                JobErrorCode.UNKNOWN_KIND,
                JobErrorCode.TOO_MANY_ACTIVE_JOBS,
                JobErrorCode.RATE_LIMITED,
                JobErrorCode.BROKER_UNAVAILABLE,
            ),
        },
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_retry(job=_job_or_404(request, job_id), owner=_owner(request))
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobAttemptsView(APIView):
    """Every attempt of a job, first to last: when it ran and how it ended."""

    permission_classes = [SignedInOrShare]

    @extend_schema(
        operation_id="jobs_attempts",
        parameters=[SHARE_PARAMETER],
        summary="List a job's attempts",
        tags=["jobs"],
        responses=AttemptSerializer(many=True),
    )
    def get(self, request: Request, job_id: str) -> Response:
        attempts = job_attempts(job=_readable_job(request, job_id))
        return Response(AttemptSerializer(attempts, many=True).data)


class JobOutputView(APIView):
    """A job's output stream, after a chunk `seq`: what `job.output` frames carry live."""

    permission_classes = [SignedInOrShare]

    @extend_schema(
        operation_id="jobs_output",
        summary="Read a job's output",
        tags=["jobs"],
        parameters=[OutputQuerySerializer, SHARE_PARAMETER],
        responses=OutputPageSerializer,
    )
    def get(self, request: Request, job_id: str) -> Response:
        query = valid_query(OutputQuerySerializer, request)
        job = _readable_job(request, job_id)
        chunks = job_output(job_id=job.pk, **query)
        page = {
            "results": [chunk.model_dump() for chunk in chunks],
            "output_chunks": job.output_chunks,
            "first_seq": job_output_first(job=job),
        }
        return Response(OutputPageSerializer(page).data)


class ShareCreateSerializer(serializers.Serializer):
    expires_in = StrictIntegerField(
        required=False,
        default=24 * 60 * 60,
        min_value=SHARE_MIN_SECONDS,
        max_value=SHARE_MAX_SECONDS,
        help_text="Seconds until the link stops working",
    )


class ShareSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)


class NewShareSerializer(ShareSerializer):
    token = serializers.CharField(help_text="Shown once: only its hash is kept")
    url = serializers.CharField(help_text="The job's state for the link's holder (`?share=`)")
    channel = serializers.CharField(help_text="Subscribe to it on /ws/ with `share`: the token")


class JobSharesView(APIView):
    """A job's read-only share links: its owner creates, lists and revokes them."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="jobs_shares_create",
        summary="Create a share link",
        description=(
            "A scoped, expiring, revocable token for one job. Its holder may `GET` this job "
            "(`?share=<token>`: the job, its log, output and attempts) and subscribe to its "
            'channel (`{"type":"subscribe","channel":"job:<id>","share":"<token>"}`), without '
            "signing in; nothing else: no other job, no account, no writes. The token is in "
            "this answer only. Owner only; at most 20 live links per job."
        ),
        tags=["jobs"],
        request=ShareCreateSerializer,
        responses={
            201: NewShareSerializer,
            **domain_errors(
                JobErrorCode.NOT_JOB_OWNER,
                JobErrorCode.TOO_MANY_SHARES,
                JobErrorCode.INVALID_SHARE,
            ),
        },
    )
    def post(self, request: Request, job_id: str) -> Response:
        incoming = valid_data(ShareCreateSerializer, request.data)
        job = _job_or_404(request, job_id)
        share, token = job_share_create(job=job, owner=_owner(request), **incoming)
        body = {
            **ShareSerializer(share).data,
            "token": token,
            "url": request.build_absolute_uri(f"/api/jobs/{job.pk}/?share={token}"),
            "channel": job_channel(str(job.pk)),
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="jobs_shares_list",
        summary="List a job's share links",
        tags=["jobs"],
        responses={200: ShareSerializer(many=True), **domain_errors(JobErrorCode.NOT_JOB_OWNER)},
    )
    def get(self, request: Request, job_id: str) -> Response:
        job = _job_or_404(request, job_id)
        if job.owner_id != _owner(request).pk:
            raise JobError(JobErrorCode.NOT_JOB_OWNER, "Only the job's owner sees its links.")
        return Response(ShareSerializer(job_shares(job=job), many=True).data)


class JobShareView(APIView):
    """One share link of a job: revoke it."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="jobs_shares_revoke",
        summary="Revoke a share link",
        description="It stops working at once; sockets following the job with it are told so.",
        tags=["jobs"],
        responses={204: None, **domain_errors(JobErrorCode.NOT_JOB_OWNER)},
    )
    def delete(self, request: Request, job_id: str, share_id: int) -> Response:
        job = _job_or_404(request, job_id)
        job_share_revoke(job=job, owner=_owner(request), share_id=share_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
