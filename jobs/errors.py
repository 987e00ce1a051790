"""Error codes of the jobs domain, shared by REST and the socket."""

from enum import StrEnum


class JobErrorCode(StrEnum):
    NOT_FOUND = "not_found"
    UNKNOWN_KIND = "unknown_kind"
    INVALID_PARAMS = "invalid_params"
    INVALID_SCHEDULE = "invalid_schedule"
    BROKER_UNAVAILABLE = "broker_unavailable"
    NOT_CANCELLABLE = "not_cancellable"
    TOO_MANY_ACTIVE_JOBS = "too_many_active_jobs"


class JobError(Exception):
    """A jobs rule refused the request; `code` is stable, `detail` is for people."""

    def __init__(
        self, code: JobErrorCode, detail: str, fields: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.fields = fields or {}
