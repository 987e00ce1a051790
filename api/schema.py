"""OpenAPI generation: every operation lists every error it can answer, with its codes."""

from __future__ import annotations

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer
from rest_framework.authentication import SessionAuthentication
from rest_framework.fields import Field
from rest_framework.permissions import SAFE_METHODS

from realtime.kernel.errors import DomainErrorCode
from realtime.kernel.events import NO_NUL_PATTERN

from .errors import AnyErrorCode, ErrorCode, ErrorSerializer
from .spectacular_internals import SpectacularHooks

_TITLES = {
    400: "The request is invalid",
    401: "Not signed in, or the token is not valid",
    403: "Not allowed",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "The body is larger than the server takes",
    415: "The body is not JSON",
    429: "Too many attempts; retry after `Retry-After` seconds",
    503: "A service the request needs is down; retry after `Retry-After` seconds",
}


# Operations that never open the database (readiness reports a database outage itself).
NO_DATABASE = {"auth_csrf", "health_live", "health_ready"}


class ErrorResponse(OpenApiResponse):
    """A documented error response: the one error shape, with the codes it may carry."""

    def __init__(self, *codes: AnyErrorCode) -> None:
        super().__init__(ErrorSerializer)
        self.codes = codes


def error_response(*codes: ErrorCode) -> ErrorResponse:
    """For `extend_schema(responses={403: error_response(ErrorCode.PERMISSION_DENIED)})`."""
    return ErrorResponse(*codes)


def domain_errors(*codes: DomainErrorCode) -> dict[int, ErrorResponse]:
    """For `extend_schema(responses={201: ..., **domain_errors(ChatErrorCode.ROOM_EXISTS)})`.

    Each code is listed under its own status, as the error handler answers it.
    """
    by_status: dict[int, list[DomainErrorCode]] = {}
    for code in codes:
        by_status.setdefault(code.http_status, []).append(code)
    return {status: ErrorResponse(*listed) for status, listed in by_status.items()}


class AutoSchema(SpectacularHooks):
    """drf-spectacular's schema plus the error responses that DRF itself can produce.

    Views declare their domain errors with `domain_errors(...)`; the errors any view of a
    kind can answer (bad JSON, a bad token, a missing CSRF token, throttling, an unknown id
    in the path...) are added here from what the view is, so none is forgotten.
    """

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        codes = self._error_codes(operation)
        responses: dict[str, Any] = operation["responses"]
        for status in sorted(codes):
            listed = ", ".join(f"`{code.value}`" for code in codes[status])
            description = f"{_TITLES[status]}. Codes: {listed}."
            responses[str(status)] = self.response_for_code(
                OpenApiResponse(ErrorSerializer, description=description), str(status)
            )
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _get_request_for_media_type(self, serializer: Any, direction: str = "request") -> Any:
        schema, required = super()._get_request_for_media_type(serializer, direction)
        # A body that is one of several (a job kind's enqueue) has no `required` of its own to
        # tell drf-spectacular so; each of them requires its `kind`.
        if isinstance(serializer, PolymorphicProxySerializer):
            required = True
        return schema, required

    def add_field_constraints(self, field: Field, direction: str, schema: dict[str, Any]) -> None:
        # DRF refuses NUL in every CharField; say so, or a valid-looking string gets a 400.
        refuses_nul = any(isinstance(v, ProhibitNullCharactersValidator) for v in field.validators)
        string = schema.get("type") == "string" and "enum" not in schema
        if direction == "request" and refuses_nul and string:
            schema.setdefault("pattern", NO_NUL_PATTERN)

    def _error_codes(self, operation: dict[str, Any]) -> dict[int, list[AnyErrorCode]]:
        codes: dict[int, list[AnyErrorCode]] = {}

        def add(status: int, *more: AnyErrorCode) -> None:
            listed = codes.setdefault(status, [])
            listed.extend(code for code in more if code not in listed)

        declared = self.get_response_serializers()
        if isinstance(declared, dict):
            for status, response in declared.items():
                if isinstance(response, ErrorResponse):
                    add(int(status), *response.codes)
        has_body = "requestBody" in operation
        queries = [p for p in operation.get("parameters", []) if p["in"] == "query"]
        if has_body:
            add(400, ErrorCode.PARSE_ERROR, ErrorCode.INVALID)
            add(413, ErrorCode.REQUEST_TOO_LARGE)
            add(415, ErrorCode.UNSUPPORTED_MEDIA_TYPE)
        elif queries:
            add(400, ErrorCode.INVALID)
        authenticators = self.view.get_authenticators()
        if authenticators:
            add(401, ErrorCode.AUTHENTICATION_FAILED)
        if {} not in operation.get("security", [{}]):
            add(401, ErrorCode.NOT_AUTHENTICATED)
        session = any(isinstance(a, SessionAuthentication) for a in authenticators)
        if session and self.method not in SAFE_METHODS:
            add(403, ErrorCode.PERMISSION_DENIED)  # a session write without its CSRF token
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            add(404, ErrorCode.NOT_FOUND)
        if any(p["name"] == "page" for p in queries):
            add(404, ErrorCode.NOT_FOUND)  # a page past the last one
        if self.view.get_throttles():
            add(429, ErrorCode.RATE_LIMITED)  # the login throttle
        if operation.get("operationId") not in NO_DATABASE:
            add(503, ErrorCode.DATABASE_UNAVAILABLE)  # reads sessions, tokens or rows
        return codes
