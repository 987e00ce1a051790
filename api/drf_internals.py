"""The Django request inside a DRF `Request`.

The only module that reads DRF's private names. A DRF `Request` wraps Django's
`HttpRequest`, which it keeps as `Request._request` (set in `Request.__init__`) and has no
public name for. Django's `login` and `logout` are written for Django's request: they rotate
the session and the CSRF token on it, set its `user`, and pass it to the `user_logged_in` and
`user_logged_out` receivers (`realtime.sockets.accounts` closes the sockets of a session
that signs out). So `api.auth` hands them `http_request(request)`.

Checked against djangorestframework 3.18.3; 3.16 and 3.17 set `_request` the same way.
`check()` runs when the api app is ready.
"""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework import request as drf_request
from rest_framework.request import Request

from realtime.kernel.dependency_checks import Reliance

RELIANCE = Reliance("djangorestframework", "session sign-in and sign-out (api.auth)", "3.18.x")


def http_request(request: Request) -> HttpRequest:
    """The Django `HttpRequest` that DRF's `request` wraps."""
    return request._request


def check() -> None:
    """Raise `DependencyChanged` unless a DRF `Request` still keeps Django's as `_request`."""
    wrapper = RELIANCE.attribute(drf_request, "Request", "rest_framework.request")
    where = "rest_framework.request.Request"
    init = RELIANCE.attribute(wrapper, "__init__", where)
    RELIANCE.parameters(init, ("self", "request"), f"{where}.__init__")
    RELIANCE.uses(init, ("_request",), f"{where}.__init__")
