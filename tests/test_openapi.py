"""The committed contract files are exactly what the code generates (OpenAPI with no warning)."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from tests.support.processes import BASE_DIR

OPENAPI_FILE = BASE_DIR / "openapi" / "openapi.yaml"
ASYNCAPI_FILE = BASE_DIR / "openapi" / "asyncapi.yaml"


def test_committed_openapi_matches_the_code(tmp_path: Path):
    # As `make schema` makes it: with the project's settings, whose apps are Switchboard's own
    # (the test settings add an app with job kinds of its own, below).
    generated = tmp_path / "openapi.yaml"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local"}
    argv = [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn"]

    subprocess.run([*argv, "--file", str(generated)], cwd=BASE_DIR, env=env, check=True)

    assert generated.read_text() == OPENAPI_FILE.read_text(), "run `make schema` and commit"


def test_a_projects_own_job_kinds_are_in_the_openapi_document(tmp_path: Path):
    generated = tmp_path / "openapi.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(generated))

    spec = yaml.safe_load(generated.read_text())
    schemas = spec["components"]["schemas"]
    enqueue = schemas["EnqueueRequest"]
    assert enqueue["discriminator"]["propertyName"] == "kind"
    assert enqueue["discriminator"]["mapping"]["tests.flaky"] == (
        "#/components/schemas/EnqueueTestsFlakyRequest"
    )
    flaky = schemas["EnqueueTestsFlakyRequest"]["properties"]
    assert flaky["params"]["properties"]["fail_times"] == {
        "type": "integer",
        "description": "Attempts that fail first",
        "maximum": 20,
        "minimum": 0,
    }
    assert schemas["EnqueueTestsFlakyKindEnum"]["enum"] == ["tests.flaky"]
    body = spec["paths"]["/api/jobs/"]["post"]["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EnqueueRequest"
    }


def test_committed_asyncapi_matches_the_code():
    generated = StringIO()

    call_command("asyncapi", stdout=generated)

    assert generated.getvalue() == ASYNCAPI_FILE.read_text(), "run `make schema` and commit"


@pytest.mark.django_db
def test_the_server_serves_the_asyncapi_document(client):
    as_yaml = client.get("/api/schema/asyncapi/")
    as_json = client.get("/api/schema/asyncapi/?format=json")

    assert as_yaml.status_code == 200
    assert as_yaml["Content-Type"].startswith("application/yaml")
    assert as_yaml.content.decode() == ASYNCAPI_FILE.read_text()
    assert as_json.json() == yaml.safe_load(ASYNCAPI_FILE.read_text())


def test_every_rest_error_response_uses_the_one_error_shape():
    spec = yaml.safe_load(OPENAPI_FILE.read_text())
    errors = [
        (path, method, status, response)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status.startswith(("4", "5")) and path != "/api/health/ready/"
    ]

    assert errors
    for path, method, status, response in errors:
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
        assert "Codes: `" in response["description"], (path, method, status)


def test_the_explorer_links_the_asyncapi_document():
    spec = yaml.safe_load(OPENAPI_FILE.read_text())

    assert "(/api/schema/asyncapi/)" in spec["info"]["description"]


def test_request_strings_say_they_refuse_nul():
    # DRF refuses "\x00" in every CharField; a schema without the pattern promises it works.
    schemas = yaml.safe_load(OPENAPI_FILE.read_text())["components"]["schemas"]

    assert schemas["MessagePostRequest"]["properties"]["body"]["pattern"] == "^[^\\x00]*$"
    assert schemas["RoomCreateRequest"]["properties"]["title"]["pattern"] == "^[^\\x00]*$"
    assert schemas["RoomCreateRequest"]["properties"]["slug"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
