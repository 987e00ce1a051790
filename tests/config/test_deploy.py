"""Deployment checks: `check --deploy` is clean in production, and no profile shows tracebacks."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest
from django.test import Client

from tests.support.processes import BASE_DIR


def production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"}}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="switchboard.example",
        **extra,
    )
    return env


def test_check_deploy_passes_with_no_warning_in_production():
    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=production_env(),
        capture_output=True,
        text=True,
    )

    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


def test_check_deploy_does_fail_on_a_weak_secret_key():
    # The check above can fail: a short key is a deployment warning.
    env = production_env()
    env["SECRET_KEY"] = "short"

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )

    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


# A forced failure inside a view, a failure outside DRF, and a foreign Host, through the whole
# middleware stack of the production profile (DEBUG is off whatever the environment says).
PROBE = """
import json, django
django.setup()
from unittest import mock
from django.test import Client
client = Client(raise_request_exception=False, HTTP_HOST="switchboard.example")
out = {}
with mock.patch("api.rooms.room_list", side_effect=RuntimeError("secret detail")):
    r = client.get("/api/rooms/", secure=True)
out["view"] = [r.status_code, r["Content-Type"], r.content.decode()]
with mock.patch("api.health.LivenessView.get", side_effect=RuntimeError("secret detail")):
    r = client.get("/api/health/", secure=True)
out["health"] = [r.status_code, r["Content-Type"], r.content.decode()]
admin_login = "django.contrib.admin.sites.AdminSite.login"
with mock.patch(admin_login, side_effect=RuntimeError("secret detail")):
    r = client.get("/admin/login/", secure=True)
out["outside_drf"] = [r.status_code, r["Content-Type"], r.content.decode()]
r = client.get("/api/rooms/", secure=True, HTTP_HOST="evil.example")
out["host"] = [r.status_code, r["Content-Type"], r.content.decode()]
print(json.dumps(out))
"""


def test_production_answers_errors_in_the_error_shape_without_tracebacks():
    # when
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=BASE_DIR,
        env=production_env(DEBUG="true"),
        capture_output=True,
        text=True,
    )

    # then
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    for name, status, code in [
        ("view", 500, "server_error"),
        ("health", 500, "server_error"),
        ("outside_drf", 500, "server_error"),
        ("host", 400, "bad_request"),
    ]:
        got_status, content_type, body = answers[name]
        assert (got_status, content_type) == (status, "application/json"), (name, body)
        assert json.loads(body) == {"code": code, "detail": json.loads(body)["detail"]}
        assert "Traceback" not in body
        assert "secret detail" not in body
    # the failure is logged for the operators, not shown to the client
    assert "secret detail" in result.stderr


@pytest.mark.django_db
def test_test_profile_answers_a_server_error_in_the_error_shape(monkeypatch):
    # given
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("secret detail")

    monkeypatch.setattr("api.rooms.room_list", broken)

    # when
    response = Client(raise_request_exception=False).get("/api/rooms/")

    # then
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"code": "server_error", "detail": "Server error."}
