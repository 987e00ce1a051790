"""The HTTP handler: each request's sync work in one call on a kept thread, with its connection."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version
from typing import Any

import pytest
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config import django_internals
from config.django_internals import PooledASGIHandler
from realtime.kernel.dependency_checks import DependencyChanged
from tests.support.sources import modules_mentioning

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db(transaction=True)]


def where(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"thread": threading.get_ident(), "connection": id(connection.connection)})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    async def parts() -> AsyncIterator[bytes]:
        yield b"one,"
        yield b"two"

    return StreamingHttpResponse(parts())


@csrf_exempt
def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="text/plain")


urlpatterns = [path("where/", where), path("stream/", stream), path("echo/", echo)]


async def call(
    handler: PooledASGIHandler, path: str, body: bytes = b"", method: str = "GET"
) -> list[dict[str, Any]]:
    """The ASGI messages `handler` sends for one request."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    chunks = [body[:3], body[3:]]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await handler(scope, receive, send)
    return sent


@pytest.fixture
def signals_seen() -> Iterator[list[tuple[str, int]]]:
    """(signal, thread) for each `request_started` and `request_finished`, in order."""
    seen: list[tuple[str, int]] = []

    def started(**kwargs: Any) -> None:
        seen.append(("started", threading.get_ident()))

    def finished(**kwargs: Any) -> None:
        seen.append(("finished", threading.get_ident()))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield seen
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


def body_of(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def json_of(sent: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(body_of(sent))
    return result


async def test_a_request_starts_runs_and_finishes_on_one_thread_that_keeps_its_connection(
    signals_seen,
):
    # given: one thread
    handler = PooledASGIHandler(threads=1)

    # when
    first = await call(handler, "/where/")
    second = await call(handler, "/where/")

    # then: both ran on that thread, each from `request_started` to `request_finished`
    assert first[0]["status"] == second[0]["status"] == 200
    ran = [json_of(sent) for sent in (first, second)]
    thread = ran[0]["thread"]
    assert ran[1]["thread"] == thread
    assert thread != threading.get_ident()
    assert signals_seen == [("started", thread), ("finished", thread)] * 2
    # and the second request used the connection the first one opened (CONN_MAX_AGE)
    assert ran[1]["connection"] == ran[0]["connection"]


async def test_a_body_sent_in_parts_reaches_the_view_whole():
    handler = PooledASGIHandler(threads=2)

    sent = await call(handler, "/echo/", body=b"hello, world", method="POST")

    assert sent[0]["status"] == 200
    assert body_of(sent) == b"hello, world"


async def test_a_streamed_response_is_finished_only_once_it_was_sent(signals_seen):
    handler = PooledASGIHandler(threads=2)

    sent = await call(handler, "/stream/")

    assert body_of(sent) == b"one,two"
    assert [name for name, _ in signals_seen] == ["started", "finished"]


async def test_an_unknown_path_gets_djangos_answer():
    handler = PooledASGIHandler(threads=1)

    sent = await call(handler, "/nowhere/")

    assert sent[0]["status"] == 404


async def test_only_http_is_served():
    with pytest.raises(ValueError, match="only HTTP"):
        await PooledASGIHandler(threads=1)({"type": "websocket"}, None, None)


def test_the_check_passes_on_the_installed_django():
    django_internals.check()  # raises DependencyChanged otherwise


def test_the_check_names_package_version_and_what_is_gone(monkeypatch):
    monkeypatch.delattr(ASGIHandler, "read_body")

    with pytest.raises(DependencyChanged) as raised:
        django_internals.check()

    assert str(raised.value) == (
        f"Django {version('Django')}: django.core.handlers.asgi.ASGIHandler.read_body is gone;"
        " Switchboard's HTTP handler (config.django_internals) needs it (checked against 5.2.x)"
    )


def test_the_check_fails_when_a_request_is_built_from_other_parameters(monkeypatch):
    def create_request(self: Any, scope: Any) -> Any:
        return None, None

    monkeypatch.setattr(ASGIHandler, "create_request", create_request)

    with pytest.raises(DependencyChanged, match=r"create_request takes \(self, scope\)"):
        django_internals.check()


def test_djangos_handler_internals_are_used_only_in_their_module():
    assert modules_mentioning("load_middleware") == {"config/django_internals.py"}
