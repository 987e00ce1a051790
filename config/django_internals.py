"""Django's ASGI handler, running each HTTP request's sync work in one hop to a kept thread.

The only module that relies on how Django's `ASGIHandler` works inside. Django's handler runs
its middleware in async mode: every `MiddlewareMixin` middleware (all of Django's own) calls
its `process_request` and `process_response` through `sync_to_async`, a sync-only one
(WhiteNoise) turns the stack below it back with `async_to_sync`, and the view is one more
`sync_to_async`. Each request also runs in its own `ThreadSensitiveContext`, so its sync code
gets a new thread, and with it a new database connection (Django's connections are per
thread): `CONN_MAX_AGE` keeps nothing. Measured on a bare `JsonResponse` view behind this
project's middleware: 5.1 ms of CPU per request, against 1.1 ms here.

`PooledASGIHandler` loads the middleware in sync mode (as a WSGI server does) and runs the
whole request in one call on a thread of its own pool: `request_started`, the middleware,
the view, and, for a response that is not streamed, `close()` with `request_finished`. So
Django's connection handling (`close_old_connections` at both signals) acts on the thread
whose connection the view used, and a pool thread keeps its connection as `CONN_MAX_AGE`
says. The event loop only reads the body and writes the response.

It uses these parts of `ASGIHandler`, none of them documented: `read_body`, `create_request`,
`send_response`, `chunk_size`, `BaseHandler.load_middleware(is_async=...)` and
`get_script_prefix`. Checked against Django 5.2; `check()` runs when `config.asgi` is loaded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import asgi as django_asgi
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

from realtime.kernel.dependency_checks import Reliance

RELIANCE = Reliance("Django", "HTTP handler (config.django_internals)", "5.2.x")


class PooledASGIHandler(ASGIHandler):
    """Django over ASGI for HTTP, each request's sync work in one call on a pool thread."""

    def __init__(self, threads: int) -> None:
        BaseHandler.__init__(self)  # not ASGIHandler's: it loads the middleware in async mode
        self.load_middleware(is_async=False)
        # Idle threads are reused before new ones start; each keeps its database connection.
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django serves only HTTP here, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Read the body, build the response on a pool thread, send it."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            response = await self._in_pool(self.respond, scope, body_file)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:  # its iterator was open until sent: close it now
                    await self._in_pool(response.close)
        finally:
            body_file.close()

    def respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """The response to one request, built as Django's WSGI handler builds it (sync)."""
        set_script_prefix(django_asgi.get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, refusal = self.create_request(scope, body_file)
        if request is None:
            assert refusal is not None  # a body Django cannot read: 400 or 413
            response = refusal
        else:
            response = self.get_response(request)
            response._handler_class = self.__class__  # type: ignore[attr-defined]
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # the server chunks what it sends
        if not response.streaming:
            # Its content is ready: `request_finished` runs here, on the thread whose
            # database connection the request used.
            response.close()
        return response

    async def _in_pool(self, function: Any, *args: Any) -> Any:
        return await sync_to_async(function, thread_sensitive=False, executor=self.executor)(*args)


def check() -> None:
    """Raise `DependencyChanged` unless Django's ASGI handler still has the parts used here."""
    where = "django.core.handlers.asgi.ASGIHandler"
    RELIANCE.attribute(django_asgi, "get_script_prefix", "django.core.handlers.asgi")
    RELIANCE.attribute(ASGIHandler, "chunk_size", where)
    read_body = RELIANCE.attribute(ASGIHandler, "read_body", where)
    RELIANCE.parameters(read_body, ("self", "receive"), f"{where}.read_body")
    create_request = RELIANCE.attribute(ASGIHandler, "create_request", where)
    RELIANCE.parameters(create_request, ("self", "scope", "body_file"), f"{where}.create_request")
    send_response = RELIANCE.attribute(ASGIHandler, "send_response", where)
    RELIANCE.parameters(send_response, ("self", "response", "send"), f"{where}.send_response")
    load_middleware = RELIANCE.attribute(BaseHandler, "load_middleware", "BaseHandler")
    RELIANCE.parameters(load_middleware, ("self", "is_async"), "BaseHandler.load_middleware")
