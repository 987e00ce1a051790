"""Codes of the socket protocol: what an `error` frame may carry, and the close codes.

An `error` frame carries the socket's own `ErrorCode` or a domain's code, sent unchanged; the
AsyncAPI document lists both, from here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from .errors import DomainErrorCode, domain_error_codes


class ErrorCode(StrEnum):
    """Codes of `error` frames about the socket itself; a domain's refusal carries its own code."""

    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    FRAME_TOO_LARGE = "frame_too_large"
    RATE_LIMITED = "rate_limited"
    AUTH_FAILED = "auth_failed"
    NOT_FOUND = "not_found"
    ALREADY_SUBSCRIBED = "already_subscribed"
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"


def error_codes() -> list[str]:
    """Every code an `error` frame may carry: the socket's own and every domain's."""
    return sorted({code.value for code in [*ErrorCode, *domain_error_codes()]})


class _KnownErrorCode:
    """Validates a code against `error_codes()`, and documents them, when asked (not at import).

    The kernel imports no domain, so the domains' codes are known only once they are loaded.
    """

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            _known_error_code, core_schema.str_schema(), ref="ErrorCode"
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        reference = handler(schema)  # a `$ref` to the one `ErrorCode` definition
        handler.resolve_ref_schema(reference).update(
            description="Stable codes of `error` frames: the socket's own and every domain's.",
            enum=error_codes(),
            title="ErrorCode",
        )
        return reference


def _known_error_code(value: str) -> str:
    if value not in error_codes():
        raise ValueError(f"{value!r} is not an error code")
    return str(value)


# What an `error` frame carries: the socket's `ErrorCode` or a domain's code, sent unchanged.
AnyErrorCode = ErrorCode | DomainErrorCode
ErrorCodeField = Annotated[str, _KnownErrorCode()]


class CloseCode:
    """WebSocket close codes the server uses (4000-4999 are application codes)."""

    SERVICE_RESTART = 1012  # the server process is going away: reconnect (to another)
    INVALID_ROOM = 4400  # no public room can have that name on the tutorial route
    SIGNED_OUT = 4401  # the session or token the socket was opened with has ended
    FORBIDDEN = 4403
    TOO_SLOW = 4408  # did not read its frames: more than SWITCHBOARD_WS_BACKLOG piled up
    TOO_MANY_CONNECTIONS = 4409  # the user (or address) has its cap of sockets open already
    FLOODING = 4429  # kept sending far above the rate limit
