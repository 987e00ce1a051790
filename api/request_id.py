"""Each request's id: the client's `X-Request-ID` when it is a sane one, else a new one; on
every log line written for the request (`realtime.kernel.logcontext`), in the response's
`X-Request-ID`, and stored with a job the request enqueues."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from realtime.kernel import logcontext


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        given = logcontext.valid_request_id(request.headers.get("X-Request-ID"))
        request_id = given or uuid.uuid4().hex
        # The user is known once DRF has authenticated it (`api.authentication` binds it).
        with logcontext.bound(request_id=request_id, user_id=None):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
