"""Background jobs. A project's own kinds are declared with `job_kind` (see the README)."""

from .registry import Retry, TimeLimitExceeded, job_kind

__all__ = ["Retry", "TimeLimitExceeded", "job_kind"]
