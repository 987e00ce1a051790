"""DRF's private names, read here only: the Django request inside a DRF `Request`, and what
a serializer keeps of a validation.

A DRF `Request` wraps Django's
`HttpRequest`, which it keeps as `Request._request` (set in `Request.__init__`) and has no
public name for. Django's `login` and `logout` are written for Django's request: they rotate
the session and the CSRF token on it, set its `user`, and pass it to the `user_logged_in` and
`user_logged_out` receivers (`realtime.sockets.accounts` closes the sockets of a session
that signs out). So `api.auth` hands them `http_request(request)`.

A serializer validates once: `is_valid` keeps its answer as `_validated_data` and `_errors`
(and `data` its output as `_data`). `revalidate` forgets them and gives it new data, so one
serializer can validate query after query (`api.fields.valid_query`).

Checked against djangorestframework 3.18.3; 3.16 and 3.17 set `_request` the same way.
`check()` runs when the api app is ready.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework import request as drf_request
from rest_framework import serializers
from rest_framework.request import Request

from realtime.kernel.dependency_checks import Reliance

RELIANCE = Reliance("djangorestframework", "session sign-in and sign-out (api.auth)", "3.18.x")
QUERIES = Reliance("djangorestframework", "query validation (api.fields.valid_query)", "3.18.x")
# What a serializer keeps of its last validation.
_KEPT = ("_validated_data", "_errors", "_data")


def http_request(request: Request) -> HttpRequest:
    """The Django `HttpRequest` that DRF's `request` wraps."""
    return request._request


def revalidate(serializer: serializers.BaseSerializer[Any], data: Any) -> None:
    """Make `serializer` validate `data` next, as a new one given `data=data` would."""
    serializer.initial_data = data
    for name in _KEPT:
        serializer.__dict__.pop(name, None)


def check() -> None:
    """Raise `DependencyChanged` unless a DRF `Request` still keeps Django's as `_request`,
    and a serializer what it validated as `revalidate` expects."""
    wrapper = RELIANCE.attribute(drf_request, "Request", "rest_framework.request")
    where = "rest_framework.request.Request"
    init = RELIANCE.attribute(wrapper, "__init__", where)
    RELIANCE.parameters(init, ("self", "request"), f"{where}.__init__")
    RELIANCE.uses(init, ("_request",), f"{where}.__init__")
    where = "rest_framework.serializers.BaseSerializer"
    base = QUERIES.attribute(serializers, "BaseSerializer", "rest_framework.serializers")
    is_valid = QUERIES.attribute(base, "is_valid", where)
    QUERIES.uses(is_valid, ("initial_data", "_validated_data", "_errors"), f"{where}.is_valid")
    QUERIES.uses(base.data.fget, ("_data",), f"{where}.data")
