"""Every code of every domain reaches both transports as declared, and both contracts list it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from rest_framework.test import APIRequestFactory

from api.errors import api_exception_handler
from chat.errors import ChatErrorCode
from jobs.errors import JobErrorCode
from realtime.kernel import events
from realtime.kernel.codes import error_codes
from realtime.kernel.errors import DomainError, DomainErrorCode, domain_error_codes
from realtime.sockets.gateway import GatewayConsumer
from realtime.sockets.limits import TokenBucket
from realtime.sockets.tutorial import TutorialChatConsumer
from tests.support.asyncapi import document, validate_frame
from tests.support.processes import BASE_DIR

CODES = domain_error_codes()
HTTP_ERRORS = range(400, 600)


def test_every_domain_is_known_once_django_has_started():
    assert {type(code) for code in CODES} == {ChatErrorCode, JobErrorCode}


def test_a_code_shared_by_domains_means_the_same_status():
    statuses: dict[str, set[int]] = {}
    for code in CODES:
        statuses.setdefault(code.value, set()).add(code.http_status)

    assert statuses["not_found"] == {404}  # chat's unknown room and jobs' unknown job
    assert all(len(shared) == 1 for shared in statuses.values()), statuses


@pytest.mark.parametrize("code", CODES, ids=lambda c: f"{type(c).__name__}.{c.name}")
def test_rest_answers_the_code_with_its_status_and_the_openapi_lists_it(code: DomainErrorCode):
    # given
    request = APIRequestFactory().post("/api/anything/")
    spec = yaml.safe_load((BASE_DIR / "openapi" / "openapi.yaml").read_text())

    # when
    response = api_exception_handler(DomainError(code, "refused"), {"request": request})

    # then
    assert code.http_status in HTTP_ERRORS
    assert response.status_code == code.http_status
    assert response.data == {"code": code.value, "detail": "refused"}
    assert code.value in spec["components"]["schemas"]["CodeEnum"]["enum"]


class RefusingGateway(GatewayConsumer):
    """The gateway, its `ping` handler replaced by one that raises the domain error given."""

    def __init__(self, error: DomainError) -> None:
        super().__init__()
        self.error = error
        self.sent: list[str] = []
        # What `websocket_connect` sets up, without a server: frames are kept, not written.
        self.bucket = TokenBucket(rate=100, burst=100)
        self.refused, self.last_refusal = 0, 0.0
        self.outbox: Any = type("Kept", (), {"push": lambda _, text: self.sent.append(text)})()

    async def refuse_ping(self, frame: events.PingFrame) -> None:
        raise self.error

    HANDLERS = {**GatewayConsumer.HANDLERS, "ping": refuse_ping}


@pytest.mark.parametrize("code", CODES, ids=lambda c: f"{type(c).__name__}.{c.name}")
async def test_the_socket_sends_the_code_unchanged_and_the_asyncapi_lists_it(
    code: DomainErrorCode,
):
    # given
    socket = RefusingGateway(DomainError(code, "refused"))

    # when
    await socket.receive(text_data=json.dumps({"type": "ping", "ref": 7}))

    # then
    (frame,) = [json.loads(text) for text in socket.sent]
    assert frame == {"type": "error", "code": code.value, "detail": "refused", "ref": 7}
    events.server_frame_adapter.validate_python(frame)
    assert validate_frame(frame) == "error"  # against the committed asyncapi.yaml
    assert code.value in document()["components"]["schemas"]["ErrorCode"]["enum"]
    assert code.value in error_codes()


@pytest.mark.parametrize("code", CODES, ids=lambda c: f"{type(c).__name__}.{c.name}")
async def test_the_tutorial_route_sends_the_code_unchanged(code: DomainErrorCode):
    # given: the tutorial socket, its posting replaced by the refusal
    socket = TutorialChatConsumer()
    sent: list[str] = []
    socket.bucket = TokenBucket(rate=100, burst=100)
    socket.refused, socket.last_refusal = 0, 0.0
    socket.outbox = type("Kept", (), {"push": lambda _, text: sent.append(text)})()

    async def refuse(data: dict[str, Any]) -> None:
        raise DomainError(code, "refused")

    socket.handle = refuse  # type: ignore[method-assign]

    # when
    await socket.receive(text_data=json.dumps({"message": "hi"}))

    # then
    (frame,) = [json.loads(text) for text in sent]
    assert frame == {"message": "[not sent: refused]", "error": code.value}
    events.TutorialErrorFrame.model_validate(frame)
    validate_frame(frame, "tutorial")


def test_an_unknown_code_is_not_a_valid_error_frame():
    with pytest.raises(ValueError, match="not an error code"):
        events.ErrorFrame(code="no_such_code", detail="x")
