"""One error shape for every REST response: `{"code", "detail", "fields"?}`."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from realtime.kernel import metrics
from realtime.kernel.errors import DomainError, DomainErrorCode, domain_error_codes


class ErrorCode(StrEnum):
    """Codes of REST errors that no domain raises; a domain's refusal carries its own code."""

    INVALID = "invalid"
    PARSE_ERROR = "parse_error"
    NOT_AUTHENTICATED = "not_authenticated"
    AUTHENTICATION_FAILED = "authentication_failed"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMITED = "rate_limited"
    SERVICE_UNAVAILABLE = "service_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    ERROR = "error"
    REQUEST_TOO_LARGE = "request_too_large"
    BAD_REQUEST = "bad_request"
    SERVER_ERROR = "server_error"


# What a REST error may carry: its own `ErrorCode` or a domain's code, sent unchanged.
AnyErrorCode = ErrorCode | DomainErrorCode


def error_codes() -> list[str]:
    """Every code a REST error may carry: REST's own and every domain's."""
    return sorted({code.value for code in [*ErrorCode, *domain_error_codes()]})


class DomainRefusal(exceptions.APIException):
    """A domain rule's refusal as DRF sees it: the code's own status, its code unchanged."""

    def __init__(self, error: DomainError) -> None:
        super().__init__(detail=error.detail, code=error.code.value)
        self.status_code = error.code.http_status
        self.error_code = error.code.value
        self.fields = error.fields
        self.retry_after = error.retry_after


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
    exceptions.Throttled: ErrorCode.RATE_LIMITED,
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

    code = serializers.ChoiceField(choices=error_codes())
    detail = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


def _code_for(exc: exceptions.APIException) -> str:
    if isinstance(exc, DomainRefusal):
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
    if isinstance(exc, DomainError):
        exc = DomainRefusal(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DatabaseOperationalError | InterfaceError):
        # Connection refused or lost: the transaction (if any) was rolled back, so the client
        # may retry. Other database errors (integrity, programming) stay 500s: they are bugs.
        logger.warning("database unavailable: %r", exc)
        metrics.DATABASE_ERRORS.inc()
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
        if isinstance(exc, DomainRefusal) and exc.fields:
            body["fields"] = exc.fields
    if isinstance(exc, DomainRefusal) and exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, DomainRefusal | ServiceUnavailable) and exc.status_code == 503:
        response.headers.setdefault("Retry-After", "5")
    response.data = body
    return response


logger = logging.getLogger("django.request")


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


@csrf_exempt  # a POST to no endpoint is a 404, not a CSRF page
def unknown_endpoint(request: HttpRequest) -> JsonResponse:
    """Any path under `/api/` that no route takes: 404 in the one error shape, in every profile.

    It is the last route under `/api/`, so Django's debug page never answers an API client,
    and a missing trailing slash gets a hint instead of a redirect that drops a POST's body.
    """
    detail = f"No API endpoint at {request.path}."
    if not request.path.endswith("/"):
        try:
            resolved = resolve(request.path + "/")
        except Resolver404:
            resolved = None
        if resolved is not None and resolved.func is not unknown_endpoint:
            detail += f" Did you mean {request.path}/ ?"
    return JsonResponse({"code": ErrorCode.NOT_FOUND.value, "detail": detail}, status=404)
