"""REST bodies declared once, as the pydantic models of `realtime.kernel.events`.

A `DeclaredSerializer`'s body is the dict its domain builds for the model (`message_body`,
`job_state_body`), the dict the socket frame is validated from, and its OpenAPI component is
the model's JSON Schema, written the OpenAPI 3.0 way: so a job or a message reads the same over
REST as in its socket frame, and neither side keeps a copy of the other's fields. The body is
not validated again on its way out (that cost more than the queries of a page); tests check
that bodies are what their models declare.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from pydantic import BaseModel
from rest_framework import serializers

DEFS = "#/$defs/"
COMPONENTS = "#/components/schemas/"
# OpenAPI names of nested declarations whose pydantic name differs (clients know these names).
COMPONENT_NAMES = {"JobStatus": "JobStatusEnum"}
# How drf-spectacular orders a schema's keys, so that generated and declared ones read alike.
KEY_ORDER = [
    "enum",
    "type",
    "format",
    "allOf",
    "oneOf",
    "$ref",
    "items",
    "description",
    "properties",
    "additionalProperties",
    "maximum",
    "minimum",
    "maxLength",
    "minLength",
    "pattern",
    "nullable",
    "required",
]


class DeclaredSerializer(serializers.BaseSerializer):
    """A read-only REST body: a pydantic model's dump, documented by the model's schema."""

    model: ClassVar[type[BaseModel]]
    component: ClassVar[str]  # its name in the OpenAPI document
    exclude: ClassVar[frozenset[str]] = frozenset()  # fields only the socket frame has

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return self.declare(instance)

    @property
    def fields(self) -> dict[str, serializers.Field]:
        """No DRF fields (DRF's OPTIONS metadata asks): the model declares the body."""
        return {}

    def declare(self, instance: Any) -> dict[str, Any]:
        """The body of `instance`: JSON-ready, as `model` declares it (without `exclude`)."""
        raise NotImplementedError


class DeclaredSerializerExtension(OpenApiSerializerExtension):
    """drf-spectacular: a `DeclaredSerializer`'s schema is its model's, in OpenAPI 3.0 terms."""

    target_class = DeclaredSerializer
    match_subclasses = True

    def get_name(self, auto_schema: AutoSchema, direction: str) -> str | None:
        return self._serializer.component

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        serializer = self._serializer
        model = serializer.model
        schema = model.model_json_schema(mode="serialization", ref_template=f"{DEFS}{{model}}")
        for name, nested in schema.pop("$defs", {}).items():
            component = ResolvedComponent(
                name=COMPONENT_NAMES.get(name, name),
                type=ResolvedComponent.SCHEMA,
                object=f"{model.__module__}.{name}",
                schema=openapi_schema(nested),
            )
            auto_schema.registry.register_on_missing(component)
        for name in serializer.exclude:
            del schema["properties"][name]
        schema["required"] = [name for name in schema["required"] if name not in serializer.exclude]
        schema.pop("description", None)  # the REST body's own description is the serializer's
        described = _doc(serializer)
        if described:
            schema["description"] = described
        return openapi_schema(schema)

    @property
    def _serializer(self) -> type[DeclaredSerializer]:
        target = self.target if inspect.isclass(self.target) else type(self.target)
        assert issubclass(target, DeclaredSerializer)  # what `target_class` matches
        return target


def _doc(serializer: type[DeclaredSerializer]) -> str:
    """The serializer's docstring, or its nearest declared parent's (not this module's)."""
    for cls in serializer.__mro__:
        if cls is DeclaredSerializer:
            return ""
        if cls.__doc__:
            return inspect.cleandoc(cls.__doc__)
    return ""


def openapi_schema(schema: Any) -> Any:
    """A pydantic JSON Schema as OpenAPI 3.0 writes it.

    `X | None` becomes `nullable`, `exclusiveMinimum: n` becomes `minimum: n` with
    `exclusiveMinimum: true`, references point at components, and what OpenAPI 3.0 or
    the REST document do not carry is left out: titles, defaults, `const`, and
    `additionalProperties: false` (the REST document lets clients take unknown fields).
    """
    if isinstance(schema, list):
        return [openapi_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "default", "const"):
            continue
        if key == "properties":
            out[key] = {name: openapi_schema(field) for name, field in value.items()}
        elif key == "$ref":
            name = value.removeprefix(DEFS)
            out[key] = COMPONENTS + COMPONENT_NAMES.get(name, name)
        elif key == "additionalProperties" and isinstance(value, bool):
            if value:
                out[key] = {}
        elif key == "required":
            out[key] = sorted(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema's bound; OpenAPI 3.0 writes it as the bound and a flag.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = openapi_schema(value)
    options = out.pop("anyOf", None)
    if options is not None:
        kinds = [option for option in options if option != {"type": "null"}]
        if len(kinds) < len(options):
            out["nullable"] = True
        if len(kinds) == 1 and "$ref" in kinds[0]:
            out["allOf"] = kinds
        elif len(kinds) == 1:
            out = {**kinds[0], **out}
        else:
            out["oneOf"] = kinds
    return {key: out[key] for key in sorted(out, key=_key_rank)}


def _key_rank(key: str) -> int:
    return KEY_ORDER.index(key) if key in KEY_ORDER else len(KEY_ORDER)
