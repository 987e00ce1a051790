"""Error codes of the jobs domain, each with its HTTP status; the socket sends them unchanged."""

from realtime.kernel.errors import DomainError, DomainErrorCode


class JobErrorCode(DomainErrorCode):
    NOT_FOUND = "not_found", 404
    UNKNOWN_KIND = "unknown_kind", 400
    INVALID_PARAMS = "invalid_params", 400
    INVALID_SCHEDULE = "invalid_schedule", 400
    BROKER_UNAVAILABLE = "broker_unavailable", 503
    NOT_CANCELLABLE = "not_cancellable", 409
    NOT_RETRYABLE = "not_retryable", 409
    NOT_JOB_OWNER = "not_job_owner", 403
    TOO_MANY_SHARES = "too_many_shares", 409
    INVALID_SHARE = "invalid_share", 400
    TOO_MANY_ACTIVE_JOBS = "too_many_active_jobs", 429
    RATE_LIMITED = "rate_limited", 429


class JobError(DomainError):
    """A jobs rule refused the request."""

    code: JobErrorCode
