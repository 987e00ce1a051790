"""The direct lane: the GETs an SPA repeats, answered without DRF's request cycle around them.

An SPA reads a few things over and over: its rooms, a room, a page of history, its jobs, a
job. Around each read, DRF's cycle (content negotiation, its authenticator and permission
classes run through its `Request`, the exception handler, the `Response` and its renderer)
cost more here than the read itself. A view that mixes in `DirectReads` answers a GET itself
when the request is plain:

- no `format` query parameter, and an `Accept` that DRF answers with plain JSON (none, or
  `application/json`, `application/*` or `*/*`, without parameters);
- its user found as DRF would find it: `Authorization: Token <key>` through the same
  `TokenAuthentication`, or else the session's user, as DRF's `SessionAuthentication` takes it
  from Django (a GET needs no CSRF token); any other `Authorization` header goes to DRF;
- allowed by the view's own permission classes;
- and the view's `read()` gives a body (it raises what the GET would answer otherwise).

`read()` is the view's GET in both lanes: DRF's `get` answers `Response(read())`. What
`read()` raises, the lane answers as DRF's `dispatch` does (the view's exception handler, then
`finalize_response`). DRF answers everything else exactly as before, refusals of the
authentication or permission classes included. The lane's 200s are DRF's too: the same body
through the same renderer, with the same headers (tests compare the two lanes). Django's
middleware runs around both.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .authentication import TokenAuthentication
from .renderers import JSONRenderer

# What an `Accept` header may list for the answer to be DRF's plain JSON.
PLAIN_JSON = frozenset({"application/json", "application/*", "*/*"})

_RENDERER = JSONRenderer()


class DirectReads(APIView):
    """An `APIView` whose plain GETs `read()` answers directly (see the module)."""

    renderer_classes = [JSONRenderer]  # the lane's, whatever the default becomes

    def read(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """The 200 body of this GET; raises what it answers otherwise."""
        raise NotImplementedError

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self.read(request, *args, **kwargs))

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if request.method == "GET" and _plain(request):
            answer = self._answer(request, args, kwargs)
            if answer is not None:
                return answer
        return super().dispatch(request, *args, **kwargs)

    def _answer(
        self, request: HttpRequest, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        try:
            signed_in = _signed_in(request)
        except Exception:  # a database or Redis failure: DRF meets it again and answers it
            return None
        if signed_in is None:
            return None
        # DRF's request, its user and auth given: it never runs its authenticators.
        drf_request = Request(request)
        drf_request.user, drf_request.auth = signed_in
        self.request, self.args, self.kwargs = drf_request, args, kwargs
        if not all(check.has_permission(drf_request, self) for check in self.get_permissions()):
            return None
        try:
            body = self.read(drf_request, **kwargs)
        except Exception as error:  # answered as DRF's `dispatch` answers a failed handler
            self.headers = self.default_response_headers
            self.format_kwarg = None
            drf_request.accepted_renderer = _RENDERER
            drf_request.accepted_media_type = _RENDERER.media_type
            return self.finalize_response(drf_request, self.handle_exception(error))
        response = HttpResponse(_RENDERER.render(body), content_type=_RENDERER.media_type)
        headers = self.default_response_headers  # as DRF's `finalize_response` sets them
        vary = headers.pop("Vary", None)
        if vary is not None:
            patch_vary_headers(response, [vary])
        for name, value in headers.items():
            response[name] = value
        return response


def _plain(request: HttpRequest) -> bool:
    """Whether DRF would answer this request with plain JSON, by its headers and query."""
    if "format" in request.GET:
        return False
    accept = request.META.get("HTTP_ACCEPT", "")
    if not accept:
        return True
    # Only media types without parameters: DRF would render with some (`indent=2`).
    return any(media.strip() in PLAIN_JSON for media in accept.split(","))


def _signed_in(request: HttpRequest) -> tuple[Any, Any] | None:
    """(user, auth) as DRF's authentication classes find them; None: let DRF decide."""
    header = request.META.get("HTTP_AUTHORIZATION")
    if header is not None:
        keyword, _, key = header.partition(" ")
        if keyword.lower() != "token" or not key or " " in key:
            return None
        try:
            return TokenAuthentication().authenticate_credentials(key)
        except AuthenticationFailed:
            return None
    user = request.user  # Django's, from the session
    return (user, None) if user.is_active else (AnonymousUser(), None)
