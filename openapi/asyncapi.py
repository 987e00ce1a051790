"""The AsyncAPI 3.0 document of the sockets, built from the frame schemas in `realtime.kernel`.

`manage.py asyncapi --file openapi/asyncapi.yaml` writes it (`make schema`); the server serves
it at `/api/schema/asyncapi/`; the tests validate live frames against the committed copy.
Output is deterministic: the same code gives the same bytes.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, get_args

import yaml
from django.conf import settings
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from realtime.kernel import events
from realtime.kernel.codes import CloseCode

SCHEMA_REF = "#/components/schemas/{model}"

# What the server answers to each client request (besides an `error` with the same `ref`).
REPLIES: dict[str, list[str]] = {
    "auth": ["authenticated"],
    "subscribe": ["subscribed", "resync_required"],
    "unsubscribe": ["unsubscribed"],
    "chat.send": ["chat.sent"],
    "chat.edit": ["chat.edited"],
    "chat.delete": ["chat.deleted"],
    "ping": ["pong"],
}

GATEWAY_DESCRIPTION = """\
One socket, many subscriptions. JSON text frames, each an object with a `type`; any client
request may carry a `ref` (a short string or an integer) that the server echoes in its reply
or in the `error` about it.

**Handshake.** Browsers authenticate with the session cookie; the `Origin` must be this site or
one of `CORS_ALLOWED_ORIGINS`. Scripts send `Authorization: Token <key>` on the handshake, or
an `auth` frame after it. Tokens in the URL are ignored. A cookie without an `Origin`, a foreign
`Origin` and a bad token are refused with HTTP 403 before the socket opens. The first frame is
always `hello`.

**Subscription channels** (the `channel` of `subscribe`, `unsubscribe` and pushed frames):

- `room:<slug>`: the room's `chat.message`, `message.edited` and `message.deleted` frames
  (with `since=N`, first those with `seq > N` from the database, then live ones, none lost
  or repeated), its `presence`, and `typing` when someone else in it types. Too far behind
  (`SWITCHBOARD_REPLAY_LIMIT`): `resync_required`, fetch the history over REST. A private or
  direct room is for its members only: to anyone else it answers `not_found`, exactly as a
  room that does not exist. When a member may no longer read it (removed, or left), every
  subscription of theirs to it ends with `unsubscribed` carrying a `reason`, in every server
  process; nothing of the room follows. A member just added may subscribe at once.
- `job:<uuid>`: the job's owner (or staff) only. A `job.update` snapshot first, then each
  `job.update` (`job.seq` increasing) and `job.log` line.
- `jobs:mine`: `job.update` for every job of the signed-in user, new ones included.
- `log:<name>`: a server log file (`GET /api/logs/` lists them), for staff only: anyone else
  gets `not_found`, exactly as for a name that is not configured. `log.lines` frames carry the
  lines appended to the file, in order, each with the byte `offset` just after it. Without
  `since` the lines start with those written from now on; with `since` (the last `offset` you
  have) those after it come first, up to `SWITCHBOARD_TAIL_REPLAY` bytes of them, and the
  `seq` of `subscribed` is the offset they start from. The file may be rotated or truncated:
  the lines go on from the new file, whose offsets count from 0 again.

**Typing.** Signed in and subscribed to a room, send `chat.typing` while the user types
(every 2 s or so; a stop with `typing: false` when the text is sent or cleared). It has no
reply. From each typing socket the room's other subscribers get a `typing` start at most once
a `CHAT_TYPING_INTERVAL` (3 s), and a stop only while that start still shows; a start shows
for its `expires_in` seconds (twice the interval) unless renewed, stopped, or followed by that
user's `chat.message`. The typist's own sockets, all tabs of that user, get none. Extra frames
are dropped silently, but every frame counts against the socket's frame rate like any other.
Typing is never stored: not replayed by `since`, not in REST history.

**Edits and deletions.** `chat.edit` changes the text of your own message, `chat.delete`
deletes your own (or any, in a room you own or administer); each is replied to with
`chat.edited` / `chat.deleted`. Each change is an event of the room's sequence with a `seq`
of its own, sent to the room's subscribers as `message.edited` / `message.deleted` (`id` and
`message_seq` name the message). So a room's messages have gaps in their `seq`s where changes
took them, and a client tracking `seq` counts every frame that has one. A message replayed by
`since` (or read over REST) carries its current text: an edited one its `edited_at`, a
deleted one is a tombstone (`deleted: true`, `body` empty); the changes after `since` follow
in `seq` order all the same. A retried `chat.edit` with the same `client_id` applies once.

**Errors.** Bad input is answered with an `error` frame and the socket stays usable; `code`
is one of the `ErrorCode` values. Frames above 64 KiB are refused before parsing
(`frame_too_large`). A chat or jobs rule refuses with the same code as over REST: a message out
of bounds is `invalid_message`, and a user (or an anonymous address) past `CHAT_POST_RATE`,
which counts posts over REST and both socket routes together, gets `rate_limited` with
`retry_after` (seconds).
"""

TUTORIAL_DESCRIPTION = """\
The Channels tutorial's room socket, kept working unchanged: each frame, both ways, is
`{"message": "..."}`. Its messages are the room's messages, as seen on `/ws/` and over REST.
It serves public rooms only (and makes one by that name if there is none); a name taken by a
private or direct room is closed with 4400, as a name no room can have.
A frame that cannot be posted is answered with `{"message": <explanation>, "error": <code>}`.
"""


def _close_codes() -> list[dict[str, Any]]:
    """`CloseCode`'s values, each described by the comment beside it in `codes.py`."""
    comments = dict(
        re.findall(r"^\s*([A-Z_]+)\s*=\s*\d+\s*#\s*(.+)$", inspect.getsource(CloseCode), re.M)
    )
    codes = [
        (value, name)
        for name, value in vars(CloseCode).items()
        if name.isupper() and isinstance(value, int)
    ]
    return [
        {
            "code": value,
            "name": name.lower(),
            "description": comments.get(name, name.replace("_", " ").capitalize()).strip(),
        }
        for value, name in sorted(codes)
    ]


def _frame_type(model: type[BaseModel]) -> str:
    (value,) = get_args(model.model_fields["type"].annotation)
    return str(value)


def _union_members(annotated: Any) -> list[type[BaseModel]]:
    union = get_args(annotated)[0]
    return list(get_args(union))


def _schemas(
    client: list[type[BaseModel]], server: list[type[BaseModel]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """JSON Schemas of every frame (client ones as parsed, server ones as sent), by name."""
    tutorial: list[type[BaseModel]] = [events.TutorialMessageFrame, events.TutorialErrorFrame]
    models = [(m, "validation") for m in client] + [(m, "serialization") for m in server]
    models += [(m, "serialization") for m in tutorial]
    refs, top = models_json_schema(models, ref_template=SCHEMA_REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = top["$defs"]
    names = {model.__name__: ref["$ref"].rsplit("/", 1)[1] for (model, _), ref in refs.items()}
    # A server frame's fields with a default other than None are always sent (`events.dump`
    # leaves out only optional fields that are None), so for a client they are required.
    for model in [*server, *tutorial]:
        schema = schemas[names[model.__name__]]
        sent = [
            name
            for name, field in model.model_fields.items()
            if field.is_required() or field.default is not None
        ]
        schema["required"] = sent
    return dict(sorted(schemas.items())), names


def _message(model: type[BaseModel], name: str, schema_name: str) -> dict[str, Any]:
    doc = inspect.getdoc(model) or ""
    summary, _, description = doc.partition("\n\n")
    message: dict[str, Any] = {
        "name": name,
        "title": name,
        "payload": {"$ref": SCHEMA_REF.format(model=schema_name)},
    }
    if summary:
        message["summary"] = " ".join(summary.split())
    if description:
        message["description"] = " ".join(description.split())
    return message


def build() -> dict[str, Any]:
    """The AsyncAPI document as a dict, ready to dump."""
    client = _union_members(events.ClientFrame)
    server = _union_members(events.ServerFrame)
    schemas, names = _schemas(client, server)
    client_types = [_frame_type(m) for m in client]
    server_types = [_frame_type(m) for m in server]
    replied = {reply for replies in REPLIES.values() for reply in replies}

    messages: dict[str, Any] = {}
    for model in [*client, *server]:
        messages[_frame_type(model)] = _message(model, _frame_type(model), names[model.__name__])
    messages["tutorial.message"] = _message(
        events.TutorialMessageFrame, "tutorial.message", names["TutorialMessageFrame"]
    )
    messages["tutorial.error"] = _message(
        events.TutorialErrorFrame, "tutorial.error", names["TutorialErrorFrame"]
    )

    def gateway_refs(types: list[str]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/gateway/messages/{t}"} for t in types]

    operations: dict[str, Any] = {
        "sendHello": {
            "action": "send",
            "channel": {"$ref": "#/channels/gateway"},
            "summary": "Greets every new connection: who it is, which protocol",
            "messages": gateway_refs(["hello"]),
        }
    }
    for model, frame_type in zip(client, client_types, strict=True):
        replies = [t for t in REPLIES.get(frame_type, []) if t in server_types] + ["error"]
        operations[_operation_id("receive", frame_type)] = {
            "action": "receive",
            "channel": {"$ref": "#/channels/gateway"},
            "summary": " ".join((inspect.getdoc(model) or frame_type).split("\n\n")[0].split()),
            "messages": gateway_refs([frame_type]),
            "reply": {"channel": {"$ref": "#/channels/gateway"}, "messages": gateway_refs(replies)},
        }
    for model, frame_type in zip(server, server_types, strict=True):
        if frame_type in replied or frame_type == "hello":
            continue
        operations[_operation_id("send", frame_type)] = {
            "action": "send",
            "channel": {"$ref": "#/channels/gateway"},
            "summary": " ".join((inspect.getdoc(model) or frame_type).split("\n\n")[0].split()),
            "messages": gateway_refs([frame_type]),
        }
    operations["receiveTutorialMessage"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/tutorial"},
        "summary": "Post a message to the room",
        "messages": [{"$ref": "#/channels/tutorial/messages/tutorial.message"}],
    }
    operations["sendTutorialMessage"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/tutorial"},
        "summary": "A message in the room (from any client), or why a frame was refused",
        "messages": [
            {"$ref": "#/channels/tutorial/messages/tutorial.message"},
            {"$ref": "#/channels/tutorial/messages/tutorial.error"},
        ],
    }

    close_codes = _close_codes()
    close_table = "\n".join(f"- `{c['code']}` {c['name']}: {c['description']}" for c in close_codes)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Switchboard WebSocket API",
            "version": str(settings.SPECTACULAR_SETTINGS["VERSION"]),
            "description": (
                f"The sockets of Switchboard (protocol {events.PROTOCOL_VERSION}), generated "
                "from the frame schemas the server validates with (`realtime/kernel/events.py`). "
                "The REST API is described by `/api/schema/` (OpenAPI).\n\n"
                f"Close codes:\n\n{close_table}\n"
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8000",
                "protocol": "ws",
                "description": "`make run`; use `wss` behind TLS in production",
            }
        },
        "channels": {
            "gateway": {
                "address": "/ws/",
                "title": "Gateway",
                "description": GATEWAY_DESCRIPTION,
                "messages": {
                    t: {"$ref": f"#/components/messages/{t}"} for t in client_types + server_types
                },
                "x-close-codes": close_codes,
            },
            "tutorial": {
                "address": "/ws/chat/{room}/",
                "title": "Tutorial room",
                "description": TUTORIAL_DESCRIPTION,
                "parameters": {
                    "room": {"description": f"The room's slug, `{events.ROOM_SLUG_PATTERN}`"}
                },
                "messages": {
                    t: {"$ref": f"#/components/messages/{t}"}
                    for t in ("tutorial.message", "tutorial.error")
                },
                "x-close-codes": close_codes,
            },
        },
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _operation_id(action: str, frame_type: str) -> str:
    words = re.split(r"[._]", frame_type)
    return action + "".join(word.capitalize() for word in words)


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no anchors for repeated values, multi-line text as `|` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _text)


def render() -> str:
    """The document as YAML text (what `openapi/asyncapi.yaml` holds)."""
    return yaml.dump(build(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
