"""Validates socket frames against the JSON Schemas of the committed `openapi/asyncapi.yaml`."""

from __future__ import annotations

import functools
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.processes import BASE_DIR

ASYNCAPI_FILE = BASE_DIR / "openapi" / "asyncapi.yaml"
DOCUMENT_URI = "urn:switchboard:asyncapi"


@functools.cache
def document() -> dict[str, Any]:
    return dict(yaml.safe_load(ASYNCAPI_FILE.read_text()))


@functools.cache
def _validators() -> dict[str, Draft202012Validator]:
    """One validator per message name (`hello`, `chat.message`, ..., `tutorial.error`)."""
    doc = document()
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    return {
        name: Draft202012Validator(
            {"$ref": f"{DOCUMENT_URI}{message['payload']['$ref']}"}, registry=registry
        )
        for name, message in doc["components"]["messages"].items()
    }


def server_messages(channel: str) -> set[str]:
    """Names of the messages the server sends on a channel (`gateway` or `tutorial`)."""
    doc = document()
    names: set[str] = set()
    for operation in doc["operations"].values():
        if operation["channel"]["$ref"] != f"#/channels/{channel}":
            continue
        sent = operation["messages"] if operation["action"] == "send" else []
        replies = operation.get("reply", {}).get("messages", [])
        names.update(ref["$ref"].rsplit("/", 1)[1] for ref in [*sent, *replies])
    return names


def validate_frame(frame: dict[str, Any], channel: str = "gateway") -> str:
    """Check a frame the server sent against its AsyncAPI message; the message's name."""
    if channel == "tutorial":
        name = "tutorial.error" if "error" in frame else "tutorial.message"
    else:
        name = str(frame.get("type"))
    if name not in server_messages(channel):
        raise AssertionError(f"{name!r} is not a server message of {channel!r} in asyncapi.yaml")
    _validators()[name].validate(frame)
    return name
