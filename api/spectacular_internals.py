"""drf-spectacular's private schema steps, given public names for `api.schema`.

The only module that uses drf-spectacular's private names. Its `AutoSchema` has no public
hook for two things the project's schema needs:

- adding to a serializer field's schema what drf-spectacular does not say (that DRF refuses
  NUL in request strings). `AutoSchema._map_basic_serializer` maps each field with
  `_map_serializer_field(self, field, direction, bypass_extensions=False)`, then writes the
  field's validators into that schema with `_insert_field_validators(self, field, schema)`.
  The second step is not told the direction, so it is taken from the first.
- building the response object of an extra status code from an `OpenApiResponse`, as
  drf-spectacular does for the ones a view declares:
  `_get_response_for_code(self, serializer, status_code, media_types=None, direction=...)`.

`SpectacularHooks` overrides and calls those, and `api.schema.AutoSchema` builds on its
public names: `add_field_constraints` and `response_for_code`. (`api.declared` uses only
the public extension API: `OpenApiSerializerExtension`, `ResolvedComponent`, the registry.)

Checked against drf-spectacular 0.30.0; 0.28 and 0.29 have the same steps with the same
parameters. `check()` runs when the api app is ready.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi as spectacular_openapi
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.fields import Field

from realtime.kernel.dependency_checks import Reliance

RELIANCE = Reliance("drf-spectacular", "OpenAPI schema (api.schema.AutoSchema)", "0.30.x")
WHERE = "drf_spectacular.openapi.AutoSchema"


class SpectacularHooks(AutoSchema):
    """drf-spectacular's `AutoSchema`, with public names for the private steps used."""

    _mapping_direction = "response"  # of the field being mapped: "request" or "response"

    def add_field_constraints(self, field: Field, direction: str, schema: dict[str, Any]) -> None:
        """Add to `field`'s `schema` (in place) what drf-spectacular leaves out.

        Called for each field of a serializer once drf-spectacular has written the field's
        validators into its schema; `direction` is "request" or "response". Does nothing here.
        """

    def response_for_code(self, response: OpenApiResponse, status: str) -> dict[str, Any]:
        """The OpenAPI response object for `status`, built as drf-spectacular builds its own."""
        built: dict[str, Any] = self._get_response_for_code(response, status)
        return built

    def _map_serializer_field(
        self, field: Field, direction: str, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        self._mapping_direction = direction
        schema: dict[str, Any] = super()._map_serializer_field(field, direction, bypass_extensions)
        return schema

    def _insert_field_validators(self, field: Field, schema: dict[str, Any]) -> None:
        super()._insert_field_validators(field, schema)
        self.add_field_constraints(field, self._mapping_direction, schema)


def check() -> None:
    """Raise `DependencyChanged` unless drf-spectacular still has the steps the hooks use."""
    schema = RELIANCE.attribute(spectacular_openapi, "AutoSchema", "drf_spectacular.openapi")
    expected: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        # method: (its first parameters, names its code must still use)
        "_map_serializer_field": (("self", "field", "direction", "bypass_extensions"), ()),
        "_insert_field_validators": (("self", "field", "schema"), ("validators",)),
        # maps each field, then inserts its validators: where the direction comes from
        "_map_basic_serializer": (
            ("self", "serializer", "direction"),
            ("_map_serializer_field", "_insert_field_validators"),
        ),
        "_get_response_for_code": (("self", "serializer", "status_code"), ("OpenApiResponse",)),
    }
    for name, (parameters, names) in expected.items():
        method = RELIANCE.attribute(schema, name, WHERE)
        RELIANCE.parameters(method, parameters, f"{WHERE}.{name}")
        RELIANCE.uses(method, names, f"{WHERE}.{name}")
