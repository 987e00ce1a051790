"""The committed OpenAPI file is exactly what the code generates, with no warning."""

from pathlib import Path

from django.core.management import call_command

from tests.support.processes import BASE_DIR


def test_committed_openapi_matches_the_code(tmp_path: Path):
    generated = tmp_path / "openapi.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(generated))

    committed = BASE_DIR / "openapi" / "openapi.yaml"
    assert generated.read_text() == committed.read_text(), "run `make schema` and commit"
