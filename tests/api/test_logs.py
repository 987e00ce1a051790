"""`/api/logs/`: staff list the configured log files with their sizes; nobody else may."""

import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def configured(settings, tmp_path):
    (tmp_path / "app.log").write_bytes(b"x" * 1234)
    settings.SWITCHBOARD_TAIL_FILES = f"worker={tmp_path}/worker.log,app={tmp_path}/app.log"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_staff_get_every_log_with_its_size():
    response = client_for(UserFactory.create(is_staff=True)).get("/api/logs/")

    assert response.status_code == 200
    assert response.json() == [
        {"name": "app", "channel": "log:app", "size": 1234},
        {"name": "worker", "channel": "log:worker", "size": None},  # not written yet
    ]


def test_other_users_are_refused_in_the_error_shape():
    response = client_for(UserFactory.create()).get("/api/logs/")

    assert response.status_code == 403
    assert response.json() == {
        "code": "permission_denied",
        "detail": "You do not have permission to perform this action.",
    }


def test_anonymous_visitors_must_sign_in():
    response = APIClient().get("/api/logs/")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
