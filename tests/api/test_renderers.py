"""The API's JSON renderer writes exactly the bytes DRF's own renderer writes."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers, serializers
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from api.renderers import JSONRenderer

UTC = dt.UTC
SERIALIZER: serializers.Serializer[Any] = serializers.Serializer()
CASES: dict[str, Any] = {
    "plain": {"a": 1, "b": [1.5, None, True, False], "c": "text"},
    "unicode": {"body": "héllo wörld ✓ 😀", "line": "a\u2028b\u2029c"},
    "times": {
        "aware": dt.datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=UTC),
        "whole": dt.datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC),
        "naive": dt.datetime(2026, 1, 5, 10, 0, 0, 5),
        "offset": dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "date": dt.date(2026, 1, 5),
        "time": dt.time(10, 0, 0, 250000),
    },
    "others": {
        "uuid": uuid.UUID("6f1c2e1a-3b4d-4c5e-8f90-1a2b3c4d5e6f"),
        "decimal": Decimal("1.25"),
        "lazy": gettext_lazy("Not found."),
        "tuple": (1, 2),
        "int keys": {1: "one", 2: "two"},
        "floats": [0.1, 1e16, -0.0, 123456789.125, 1.5e300],
    },
    "drf containers": ReturnDict(
        {"results": ReturnList([{"x": 1}], serializer=SERIALIZER), "count": 1},
        serializer=SERIALIZER,
    ),
    "huge int": {"n": 2**70},  # beyond orjson: DRF's renderer writes it
    "list": [{"seq": n, "body": "x" * n} for n in range(50)],
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_bytes_are_drf_renderers(name: str) -> None:
    data = CASES[name]
    assert JSONRenderer().render(data) == renderers.JSONRenderer().render(data)


def test_small_floats_are_the_same_numbers_in_another_spelling() -> None:
    # Python writes 2.5e-05, orjson 0.000025: the same number to every JSON reader.
    data = {"floats": [1e-7, 2.5e-5, 1.23e-18]}
    written = JSONRenderer().render(data)
    assert written == b'{"floats":[1e-7,0.000025,1.23e-18]}'
    assert json.loads(written) == json.loads(renderers.JSONRenderer().render(data))


def test_indented_on_request_and_nothing_for_none() -> None:
    data = {"a": [1, 2]}
    indented = JSONRenderer().render(data, "application/json; indent=2")
    assert indented == renderers.JSONRenderer().render(data, "application/json; indent=2")
    assert indented.startswith(b"{\n  ")
    assert JSONRenderer().render(None) == b""
