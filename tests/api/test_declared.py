"""REST bodies of jobs and messages come from the socket frames' declarations, body and schema."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from pydantic import BaseModel
from rest_framework.authtoken.models import Token

from api.declared import openapi_schema
from api.jobs import Enqueued
from jobs.models import JobStatus
from realtime.kernel import events
from tests.factories import RoomFactory, UserFactory
from tests.support.processes import BASE_DIR, http_json
from tests.support.ws import WsClient

SCHEMAS = yaml.safe_load((BASE_DIR / "openapi" / "openapi.yaml").read_text())["components"][
    "schemas"
]
LATER = {"kind": "demo.sleep", "params": {"steps": 1}, "countdown": 3600}


@pytest.mark.parametrize(
    ("component", "model", "envelope"),
    [
        ("Job", events.JobState, set()),
        ("Enqueued", Enqueued, set()),
        ("Message", events.ChatMessageFrame, events.FRAME_ENVELOPE),
    ],
)
def test_the_openapi_components_are_the_models_fields(
    component: str, model: type[BaseModel], envelope: set[str]
):
    schema = SCHEMAS[component]
    fields = {name: field for name, field in model.model_fields.items() if name not in envelope}

    assert list(schema["properties"]) == list(fields)
    assert schema["required"] == sorted(n for n, f in fields.items() if f.is_required())
    nullable = {name for name, prop in schema["properties"].items() if prop.get("nullable")}
    assert nullable == {n for n, f in fields.items() if type(None) in _members(f.annotation)}


def _members(annotation: Any) -> tuple[Any, ...]:
    return getattr(annotation, "__args__", (annotation,))


def test_optional_values_and_references_are_written_the_openapi_3_0_way():
    pydantic = {
        "properties": {
            "error": {"anyOf": [{"$ref": "#/$defs/JobError"}, {"type": "null"}], "default": None},
            "when": {"anyOf": [{"format": "date-time", "type": "string"}, {"type": "null"}]},
            "status": {"$ref": "#/$defs/JobStatus"},
            "params": {"additionalProperties": True, "title": "Params", "type": "object"},
        },
        "additionalProperties": False,
        "required": ["status", "error"],
        "title": "Example",
        "type": "object",
    }

    assert openapi_schema(pydantic) == {
        "type": "object",
        "properties": {
            "error": {"allOf": [{"$ref": "#/components/schemas/JobError"}], "nullable": True},
            "when": {"type": "string", "format": "date-time", "nullable": True},
            "status": {"$ref": "#/components/schemas/JobStatusEnum"},
            "params": {"type": "object", "additionalProperties": {}},
        },
        "required": ["error", "status"],
    }


@pytest.mark.django_db(transaction=True)
async def test_rest_gives_the_message_and_the_job_the_socket_sends(live_server_url):
    # given: a signed-in client following a room and, once enqueued, a job
    def make() -> tuple[str, str]:
        user = UserFactory.create()
        return RoomFactory.create().slug, str(Token.objects.create(user=user).key)

    room, token = await database_sync_to_async(make)()
    headers = {"Authorization": f"Token {token}"}
    socket = await WsClient.open(live_server_url, additional_headers=headers)
    await socket.request(type="subscribe", channel=f"room:{room}")

    async def rest(path: str, body: Any = None) -> Any:
        method = "GET" if body is None else "POST"
        url = f"{live_server_url}{path}"
        status, reply, _ = await sync_to_async(http_json)(
            url, method=method, body=body, headers=headers
        )
        assert status in (200, 201, 202), reply
        return reply

    # when: a message posted, a job enqueued, each read back over REST
    posted = await rest(f"/api/rooms/{room}/messages/", {"body": "hi", "client_id": "c-1"})
    frame = await socket.expect("chat.message")
    history = await rest(f"/api/rooms/{room}/messages/")
    enqueued = await rest("/api/jobs/", LATER)
    await socket.request(type="subscribe", channel=f"job:{enqueued['id']}")
    snapshot = await socket.expect("job.update")
    polled = await rest(f"/api/jobs/{enqueued['id']}/")

    # then: REST has the frame's fields and values, without the socket's envelope
    as_rest = {key: value for key, value in frame.items() if key not in events.FRAME_ENVELOPE}
    assert posted == as_rest
    assert history["results"] == [as_rest]
    assert polled == snapshot["job"]
    assert {k: v for k, v in enqueued.items() if k not in ("status_url", "channel")} == polled
    await socket.close()


def test_the_declared_job_statuses_are_the_models():
    assert [status.value for status in events.JobStatus] == list(JobStatus.values)
