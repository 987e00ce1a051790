"""The api app's reach into DRF and drf-spectacular internals, checked at start-up."""

from __future__ import annotations

from importlib.metadata import version
from types import ModuleType
from typing import Any

import pytest
from django.http import HttpRequest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import request as drf_request
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from api import drf_internals, spectacular_internals
from api.drf_internals import http_request
from api.fields import valid_query
from realtime.kernel.dependency_checks import DependencyChanged
from realtime.kernel.events import NO_NUL_PATTERN
from tests.factories import PASSWORD
from tests.support.sources import modules_mentioning

CHECKED = [drf_internals, spectacular_internals]


@pytest.mark.parametrize("internals", CHECKED, ids=lambda module: module.__name__)
def test_each_check_passes_on_the_installed_versions(internals: ModuleType):
    internals.check()  # raises DependencyChanged otherwise


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("._request", "api/drf_internals.py"),
        ("_validated_data", "api/drf_internals.py"),
        ("_map_serializer_field", "api/spectacular_internals.py"),
        ("_insert_field_validators", "api/spectacular_internals.py"),
        ("_get_response_for_code", "api/spectacular_internals.py"),
        ("_map_basic_serializer", "api/spectacular_internals.py"),
    ],
)
def test_a_private_name_is_used_only_in_its_dependencys_module(name: str, owner: str):
    assert modules_mentioning(name) == {owner}


# ---------------------------------------------------------------- DRF


def test_the_drf_check_names_package_version_and_what_is_gone(monkeypatch):
    monkeypatch.delattr(drf_request, "Request")

    with pytest.raises(DependencyChanged) as raised:
        drf_internals.check()

    assert str(raised.value) == (
        f"djangorestframework {version('djangorestframework')}:"
        " rest_framework.request.Request is gone; Switchboard's session sign-in and sign-out"
        " (api.auth) needs it (checked against 3.18.x)"
    )


def test_the_drf_check_fails_when_a_request_keeps_djangos_under_another_name(monkeypatch):
    def init(self: Any, request: HttpRequest, parsers: Any = None, **kwargs: Any) -> None:
        self._django_request = request

    monkeypatch.setattr(Request, "__init__", init)

    with pytest.raises(DependencyChanged, match=r"Request\.__init__ no longer uses _request;"):
        drf_internals.check()


def test_the_drf_check_fails_when_a_serializer_keeps_its_validation_elsewhere(monkeypatch):
    def is_valid(self: Any, *, raise_exception: bool = False) -> bool:
        self.validated = self.run_validation(self.initial_data)
        return True

    monkeypatch.setattr(serializers.BaseSerializer, "is_valid", is_valid)

    gone = r"is_valid no longer uses _validated_data, _errors;"
    with pytest.raises(DependencyChanged, match=gone):
        drf_internals.check()


class Query(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=10, default=5)
    before = serializers.IntegerField(required=False)


@pytest.mark.parametrize("order", ["good first", "bad first"])
def test_one_kept_serializer_validates_each_query_afresh(order: str):
    def query(string: str) -> Request:
        return Request(APIRequestFactory().get(f"/?{string}"))

    answers = [
        ("limit=3&before=9", {"limit": 3, "before": 9}),
        ("", {"limit": 5}),  # nothing kept of the query before
        ("limit=x", ValidationError),
        ("before=2", {"limit": 5, "before": 2}),
    ]
    for string, wanted in answers if order == "good first" else answers[::-1]:
        if wanted is ValidationError:
            with pytest.raises(ValidationError) as refused:
                valid_query(Query, query(string))
            assert set(refused.value.detail) == {"limit"}
        else:
            assert valid_query(Query, query(string)) == wanted


def test_a_drf_request_gives_back_the_django_request_it_wraps():
    django_request = HttpRequest()

    assert http_request(Request(django_request)) is django_request


@pytest.mark.django_db
def test_signing_in_over_rest_still_starts_a_session_and_signing_out_ends_it(user):
    # given
    browser = APIClient(enforce_csrf_checks=True)
    csrf = browser.get("/api/auth/csrf/").json()["csrf_token"]

    # when: Django's login gets the request DRF wraps, so its session is the one saved
    signed_in = browser.post(
        "/api/auth/login/",
        {"username": user.username, "password": PASSWORD},
        format="json",
        HTTP_X_CSRFTOKEN=csrf,
    )

    # then
    assert signed_in.status_code == 200
    session = browser.cookies["sessionid"].value
    assert session
    assert browser.session["_auth_user_id"] == str(user.pk)

    # when: signing out flushes that session
    csrf = browser.cookies["csrftoken"].value
    assert browser.post("/api/auth/logout/", HTTP_X_CSRFTOKEN=csrf).status_code == 204

    # then
    assert browser.cookies["sessionid"].value != session
    assert "_auth_user_id" not in browser.session


# ---------------------------------------------------------------- drf-spectacular


@pytest.mark.parametrize(
    "name",
    [
        "_map_serializer_field",
        "_insert_field_validators",
        "_map_basic_serializer",
        "_get_response_for_code",
    ],
)
def test_the_spectacular_check_names_package_version_and_what_is_gone(monkeypatch, name: str):
    monkeypatch.delattr(SpectacularAutoSchema, name)

    with pytest.raises(DependencyChanged) as raised:
        spectacular_internals.check()

    assert str(raised.value) == (
        f"drf-spectacular {version('drf-spectacular')}:"
        f" drf_spectacular.openapi.AutoSchema.{name} is gone; Switchboard's OpenAPI schema"
        " (api.schema.AutoSchema) needs it (checked against 0.30.x)"
    )


def test_the_spectacular_check_fails_when_mapping_a_field_takes_other_parameters(monkeypatch):
    def map_serializer_field(self: Any, field: Any, bypass_extensions: bool = False) -> Any:
        return {}

    monkeypatch.setattr(SpectacularAutoSchema, "_map_serializer_field", map_serializer_field)

    with pytest.raises(DependencyChanged, match=r"takes \(self, field, bypass_extensions\)"):
        spectacular_internals.check()


def test_the_spectacular_check_fails_when_validators_are_no_longer_inserted_per_field(
    monkeypatch,
):
    # The hook learns the direction from the field mapped just before its validators.
    def map_basic_serializer(self: Any, serializer: Any, direction: str) -> Any:
        return {"type": "object"}

    monkeypatch.setattr(SpectacularAutoSchema, "_map_basic_serializer", map_basic_serializer)

    with pytest.raises(
        DependencyChanged,
        match="no longer uses _map_serializer_field, _insert_field_validators;",
    ):
        spectacular_internals.check()


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    """The OpenAPI document generated now, so that the hooks really ran (not the committed file)."""
    schema: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return schema


def test_the_generated_schema_still_says_request_strings_refuse_nul(generated):
    schemas = generated["components"]["schemas"]

    assert schemas["RoomCreateRequest"]["properties"]["title"]["pattern"] == NO_NUL_PATTERN
    assert schemas["MessagePostRequest"]["properties"]["body"]["pattern"] == NO_NUL_PATTERN
    # only what a client sends is refused: the same kind of field in a response has no pattern
    assert "pattern" not in schemas["Room"]["properties"]["title"]


def test_the_generated_schema_still_lists_the_errors_drf_can_answer(generated):
    login = generated["paths"]["/api/auth/login/"]["post"]["responses"]

    assert login["403"] == {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        "description": "Not allowed. Codes: `permission_denied`.",
    }
