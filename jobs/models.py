"""Jobs data: the Job row is the source of truth for every background job."""

import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class JobStatus(models.TextChoices):
    SCHEDULED = "scheduled"  # waiting for its countdown / eta
    QUEUED = "queued"  # due, waiting for a worker
    RETRYING = "retrying"  # an attempt failed; the next waits for `next_attempt_at`
    RUNNING = "running"
    CANCELLING = "cancelling"  # running, asked to stop; stopped if it does not in its grace
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


WAITING = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING)
RUNNING = (JobStatus.RUNNING, JobStatus.CANCELLING)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    # Also the Celery task id.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress_current = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress_message = models.CharField(max_length=500, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)  # {"type", "message"}: never a traceback
    created_at = models.DateTimeField(default=timezone.now)
    run_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # attempts started
    # Attempts it may have before it fails for good: its kind's, from the first one, and
    # as many again from a retry asked for by its owner.
    max_attempts = models.PositiveIntegerField(default=1)
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # retrying: when
    seq = models.PositiveBigIntegerField(default=0)  # counts the job's events
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    # The id of the request that enqueued it (`X-Request-ID`): on its log lines in the worker.
    request_id = models.CharField(max_length=64, blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)  # running: worker is alive
    dispatched_at = models.DateTimeField(null=True, blank=True)  # the Celery message was sent
    log_lines = models.PositiveIntegerField(default=0)
    output_chunks = models.PositiveBigIntegerField(default=0)  # the last output chunk's seq
    # Due and waiting for a worker: its place among the due jobs (1: next), and when it should
    # start; kept by beat's `jobs.queue_positions` every second, None otherwise.
    queue_position = models.PositiveIntegerField(null=True, blank=True)
    estimated_start_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["status", "run_at"]),
            # The few jobs with a queue position, found each second without a scan.
            models.Index(
                fields=["queue_position"],
                condition=Q(queue_position__isnull=False),
                name="jobs_job_queue_position",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="jobs_job_owner_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"


class JobLogLine(models.Model):
    """A numbered line a job wrote while it ran."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log")
    number = models.PositiveIntegerField()
    line = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="jobs_logline_job_number")
        ]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.number}"


class JobOutputChunk(models.Model):
    """A piece of what a job wrote to its output stream; the newest JOBS_OUTPUT_KEEP are kept."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="output")
    seq = models.PositiveBigIntegerField()  # 1, 2, ... with no gap
    data = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="jobs_outputchunk_job_seq")
        ]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.seq}"


class JobAttempt(models.Model):
    """One run of a job: when it started and ended, and how (the error of a failed one)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()  # 1, 2, ... with no gap
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.RUNNING)
    error = models.JSONField(null=True, blank=True)  # {"type", "message"}
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="jobs_attempt_job_number")
        ]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.number} ({self.status})"


class JobShare(models.Model):
    """A read-only link to one job: its holder may read that job and follow its channel, and
    nothing else, until it expires or its owner revokes it. Only the token's hash is stored."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="shares")
    token_hash = models.CharField(max_length=64, unique=True)  # SHA-256, hex
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "-created_at"]

    def __str__(self) -> str:
        return f"share {self.pk} of {self.job_id}"

    @staticmethod
    def hash(token: str) -> str:
        """What is stored of a token: its SHA-256 (a token is 256 random bits, so no salt)."""
        return hashlib.sha256(token.encode()).hexdigest()
