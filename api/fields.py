"""Serializer fields that take JSON values only as the schema types them (no coercion).

DRF turns `0` into `"0"` for a CharField and `false` into `0.0` for a FloatField; the OpenAPI
schema says string and number, so such a request must be refused, not reinterpreted.
"""

from __future__ import annotations

import threading
from typing import Any

from rest_framework import serializers
from rest_framework.request import Request

from .drf_internals import revalidate


class StringField(serializers.Field):
    """Any JSON string, exactly as sent: its length and content are a domain rule."""

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> str:
        return str(value)


class StrictCharField(serializers.CharField):
    """A string, and only a string."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictRegexField(serializers.RegexField):
    """A string matching a pattern, and only a string."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer (not a boolean, a float or a numeric string)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictFloatField(serializers.FloatField):
    """A JSON number (not a boolean, not a numeric string)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return float(super().to_internal_value(data))


def query_data(request: Request) -> dict[str, str]:
    """The query string as a plain dict, for a serializer to validate.

    DRF reads a QueryDict like an HTML form, where `?limit=` means "not given"; the API says an
    empty value is a value, and refuses it when it is not valid.
    """
    return dict(request.query_params.dict())


def valid_query(serializer: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The request's query string as `serializer` validates it; refused (400) when it does not.

    A serializer made for each request builds its fields anew (DRF deep-copies the declared
    ones): 30-45 µs for a query of two or three numbers, more than reading a page of history
    costs the database. Each thread keeps one serializer of each class and validates query
    after query with it (`drf_internals.revalidate`).
    """
    return valid_data(serializer, query_data(request))


def valid_data(serializer: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """`data` (a query, a request's body) as `serializer` validates it; refused (400) when it
    does not. On this thread's one serializer of that class (see `valid_query`)."""
    kept: dict[type, serializers.Serializer] = _thread.__dict__.setdefault("validators", {})
    validator = kept.get(serializer)
    if validator is None:
        validator = kept[serializer] = serializer()
    revalidate(validator, data)
    validator.is_valid(raise_exception=True)
    return dict(validator.validated_data)


_thread = threading.local()
