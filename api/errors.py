"""One error shape for every REST response: `{"code", "detail", "fields"?}`."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from chat.errors import ChatError, ChatErrorCode
from jobs.errors import JobError, JobErrorCode


class ErrorCode(StrEnum):
    """Stable codes of REST errors."""

    INVALID = "invalid"
    PARSE_ERROR = "parse_error"
    NOT_AUTHENTICATED = "not_authenticated"
    AUTHENTICATION_FAILED = "authentication_failed"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    THROTTLED = "throttled"
    SERVICE_UNAVAILABLE = "service_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    ERROR = "error"
    ROOM_EXISTS = ChatErrorCode.ROOM_EXISTS.value
    INVALID_ROOM = ChatErrorCode.INVALID_ROOM.value
    INVALID_MESSAGE = ChatErrorCode.INVALID_MESSAGE.value
    POSTING_NOT_ALLOWED = ChatErrorCode.POSTING_NOT_ALLOWED.value
    CLIENT_ID_CONFLICT = ChatErrorCode.CLIENT_ID_CONFLICT.value
    UNKNOWN_KIND = JobErrorCode.UNKNOWN_KIND.value
    INVALID_PARAMS = JobErrorCode.INVALID_PARAMS.value
    INVALID_SCHEDULE = JobErrorCode.INVALID_SCHEDULE.value
    BROKER_UNAVAILABLE = JobErrorCode.BROKER_UNAVAILABLE.value
    NOT_CANCELLABLE = JobErrorCode.NOT_CANCELLABLE.value
    TOO_MANY_ACTIVE_JOBS = JobErrorCode.TOO_MANY_ACTIVE_JOBS.value
    REQUEST_TOO_LARGE = "request_too_large"
    BAD_REQUEST = "bad_request"
    SERVER_ERROR = "server_error"


_CHAT_STATUS = {
    ChatErrorCode.ROOM_NOT_FOUND: 404,
    ChatErrorCode.ROOM_EXISTS: 409,
    ChatErrorCode.INVALID_ROOM: 400,
    ChatErrorCode.INVALID_MESSAGE: 400,
    ChatErrorCode.POSTING_NOT_ALLOWED: 403,
    ChatErrorCode.CLIENT_ID_CONFLICT: 409,
}


_JOB_STATUS = {
    JobErrorCode.NOT_FOUND: 404,
    JobErrorCode.UNKNOWN_KIND: 400,
    JobErrorCode.INVALID_PARAMS: 400,
    JobErrorCode.INVALID_SCHEDULE: 400,
    JobErrorCode.BROKER_UNAVAILABLE: 503,
    JobErrorCode.NOT_CANCELLABLE: 409,
    JobErrorCode.TOO_MANY_ACTIVE_JOBS: 429,
}


class DomainError(exceptions.APIException):
    """A domain rule's refusal, with the domain's own stable code."""

    def __init__(
        self, status_code: int, code: str, detail: str, fields: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.error_code = code
        self.fields = fields or {}


_CODES: dict[type[exceptions.APIException], ErrorCode] = {
    exceptions.ValidationError: ErrorCode.INVALID,
    exceptions.ParseError: ErrorCode.PARSE_ERROR,
    exceptions.NotAuthenticated: ErrorCode.NOT_AUTHENTICATED,
    exceptions.AuthenticationFailed: ErrorCode.AUTHENTICATION_FAILED,
    exceptions.PermissionDenied: ErrorCode.PERMISSION_DENIED,
    exceptions.NotFound: ErrorCode.NOT_FOUND,
    exceptions.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    exceptions.NotAcceptable: ErrorCode.NOT_ACCEPTABLE,
    exceptions.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    exceptions.Throttled: ErrorCode.THROTTLED,
}


class ServiceUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "A service this request needs is unavailable; try again shortly."
    default_code = ErrorCode.SERVICE_UNAVAILABLE


class DatabaseUnavailable(ServiceUnavailable):
    """The database refused or dropped the connection; nothing of the request was kept."""

    default_detail = "The database is unavailable; try again shortly."
    default_code = ErrorCode.DATABASE_UNAVAILABLE


class ErrorSerializer(serializers.Serializer):
    """The body of every error response (documented in the OpenAPI schema)."""

    code = serializers.ChoiceField(choices=[c.value for c in ErrorCode])
    detail = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


def _code_for(exc: exceptions.APIException) -> str:
    if isinstance(exc, DomainError):
        return exc.error_code
    for cls in type(exc).__mro__:
        if cls in _CODES:
            return _CODES[cls].value
    code = getattr(exc, "default_code", None)
    return str(code) if code else ErrorCode.ERROR.value


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(detail, list) and detail and all(isinstance(d, str) for d in detail):
        return {prefix or "non_field_errors": [str(d) for d in detail]}
    if isinstance(detail, list):
        out = {}
        for index, value in enumerate(detail):
            out.update(_flatten(value, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix or "non_field_errors": [str(detail)]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, reshaped into the one error body; headers (Retry-After...) are kept."""
    if isinstance(exc, ChatError):
        exc = DomainError(_CHAT_STATUS[exc.code], exc.code.value, exc.detail)
    elif isinstance(exc, JobError):
        exc = DomainError(_JOB_STATUS[exc.code], exc.code.value, exc.detail, exc.fields)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DatabaseOperationalError | InterfaceError):
        # Connection refused or lost: the transaction (if any) was rolled back, so the client
        # may retry. Other database errors (integrity, programming) stay 500s: they are bugs.
        logger.warning("database unavailable: %r", exc)
        exc = DatabaseUnavailable()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    body: dict[str, Any] = {"code": _code_for(exc)}
    if isinstance(exc, exceptions.ValidationError):
        body["detail"] = "The request is invalid."
        body["fields"] = _flatten(exc.detail)
    else:
        body["detail"] = str(exc.detail)
        if isinstance(exc, DomainError) and exc.fields:
            body["fields"] = exc.fields
    if isinstance(exc, DomainError | ServiceUnavailable) and exc.status_code == 503:
        response.headers.setdefault("Retry-After", "5")
    response.data = body
    return response


logger = logging.getLogger("django.request")

# Seconds a client is asked to wait when it has too many unfinished jobs.
ACTIVE_JOBS_RETRY_AFTER = 10


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = ErrorCode.REQUEST_TOO_LARGE


class BadRequest(exceptions.APIException):
    status_code = 400
    default_detail = "Bad request."
    default_code = ErrorCode.BAD_REQUEST


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """`exception_handler`, and the one error shape for what it leaves to Django.

    Nothing escapes to Django's error pages (a debug page with DEBUG on): an oversized body
    is 413, another suspicious request 400, and any other failure a logged 500.
    """
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        exc = BadRequest()
    response = exception_handler(exc, context)
    if response is None:
        request = context.get("request")
        logger.error(
            "Internal Server Error: %s",
            getattr(request, "path", "?"),
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        return Response(_server_error_body(), status=500)
    if response.status_code == 429 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(ACTIVE_JOBS_RETRY_AFTER)
    return response


def _server_error_body() -> dict[str, str]:
    return {"code": ErrorCode.SERVER_ERROR.value, "detail": "Server error."}


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's 400 (a foreign `Host` header, a malformed request) in the one error shape."""
    code = ErrorCode.BAD_REQUEST
    detail = "Bad request."
    status = 400
    if isinstance(exception, RequestDataTooBig):
        code, detail, status = ErrorCode.REQUEST_TOO_LARGE, RequestTooLarge.default_detail, 413
    return JsonResponse({"code": code.value, "detail": detail}, status=status)


def server_error(request: HttpRequest) -> JsonResponse:
    """Django's 500 in the one error shape: no page, no traceback."""
    return JsonResponse(_server_error_body(), status=500)
