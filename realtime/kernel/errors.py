"""What a domain's refusal is made of: its error codes, each with its HTTP status, and the error.

Each domain declares one `DomainErrorCode` enum; REST takes each code's status from it and the
socket sends the code unchanged, so neither interface keeps a copy of any domain's codes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from . import metrics


class DomainErrorCode(StrEnum):
    """A domain's error code: the value clients see on REST and on the socket, and its status.

    Members are declared as `NAME = "code", http_status`.
    """

    http_status: int

    def __new__(cls, value: str, http_status: int) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.http_status = http_status
        return member


def domain_error_codes() -> list[DomainErrorCode]:
    """Every code of every domain (each domain's errors module is imported when Django starts)."""
    return [code for domain in DomainErrorCode.__subclasses__() for code in domain]


class DomainError(Exception):
    """A domain rule refused the request; `code` is stable, `detail` is for people.

    `fields` names the parts of the request at fault, `retry_after` the whole seconds after
    which the same request may succeed.
    """

    def __init__(
        self,
        code: DomainErrorCode,
        detail: str,
        fields: dict[str, list[str]] | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        if code.value == "rate_limited":  # every transport's refusals, counted once, here
            metrics.RATE_LIMITED.labels(type(code).__name__.removesuffix("ErrorCode").lower()).inc()
        self.code = code
        self.detail = detail
        self.fields = fields or {}
        self.retry_after = retry_after
