"""`/api/auth/`: session login with CSRF, tokens for scripts, who am I, log out."""

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from api.authentication import TokenAuthentication
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser() -> APIClient:
    return APIClient(enforce_csrf_checks=True)


def test_session_login_needs_the_csrf_token(browser, user):
    # when
    response = browser.post(
        "/api/auth/login/", {"username": user.username, "password": PASSWORD}, format="json"
    )

    # then
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "CSRF" in response.json()["detail"]


def test_session_login_with_csrf_then_me_then_logout(browser, user):
    # given
    csrf = browser.get("/api/auth/csrf/").json()["csrf_token"]

    # when
    login = browser.post(
        "/api/auth/login/",
        {"username": user.username, "password": PASSWORD},
        format="json",
        HTTP_X_CSRFTOKEN=csrf,
    )

    # then
    assert login.status_code == 200
    assert login.json() == {
        "authenticated": True,
        "user": {"id": user.pk, "username": user.username, "is_staff": False},
    }
    assert browser.get("/api/auth/me/").json()["authenticated"] is True

    # a session write without the (rotated) CSRF token is refused
    assert browser.post("/api/auth/logout/").status_code == 403
    csrf = browser.cookies["csrftoken"].value
    assert browser.post("/api/auth/logout/", HTTP_X_CSRFTOKEN=csrf).status_code == 204
    assert browser.get("/api/auth/me/").json() == {"authenticated": False, "user": None}


def test_wrong_password_is_a_validation_error_in_the_one_error_shape(user):
    response = APIClient().post(
        "/api/auth/token/", {"username": user.username, "password": "nope"}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["fields"]["non_field_errors"]


def test_token_for_scripts_then_logout_revokes_it(user):
    # given
    script = APIClient()
    key = script.post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    ).json()["token"]
    script.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    # when
    me = script.get("/api/auth/me/").json()
    logout = script.post("/api/auth/logout/")

    # then
    assert me["user"]["username"] == user.username
    assert logout.status_code == 204
    assert not Token.objects.filter(key=key).exists()
    assert script.get("/api/auth/me/").status_code == 401


def test_token_endpoint_rejects_non_json_bodies(user):
    response = APIClient().post(
        "/api/auth/token/", "username=a&password=b", content_type="text/plain"
    )

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@pytest.fixture
def token(user) -> Token:
    return Token.objects.create(user=user)


def test_a_token_names_its_user_and_is_the_requests_auth(user, token):
    # when
    authenticated = TokenAuthentication().authenticate_credentials(token.key)

    # then: the user, whole, and a token that signing out can delete
    found, auth = authenticated
    assert found == user
    assert (found.get_username(), found.is_active, found.last_login) == (
        user.username,
        user.is_active,
        user.last_login,
    )
    assert (auth.key, auth.user_id) == (token.key, user.pk)
    auth.delete()
    assert not Token.objects.exists()


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Token unknown-key", "Invalid token."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Token a b", "Invalid token header. Token string should not contain spaces."),
    ],
)
def test_a_bad_token_is_refused_as_drf_refuses_it(user, header, detail):
    response = APIClient().get("/api/jobs/", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"code": "authentication_failed", "detail": detail}


def test_the_token_of_an_inactive_user_is_refused(user, token):
    user.is_active = False
    user.save()

    response = APIClient().get("/api/jobs/", HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 401
    assert response.json() == {
        "code": "authentication_failed",
        "detail": "User inactive or deleted.",
    }


def test_a_key_is_a_value_never_sql(user, token):
    response = APIClient().get("/api/jobs/", HTTP_AUTHORIZATION="Token x'or'1'='1")

    assert response.status_code == 401


# ------------------------------------------------------------------ the session's reads


def signed_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user, backend="api.authentication.ModelBackend")
    return client


def me(client: APIClient) -> dict:
    return client.get("/api/auth/me/").json()


def test_a_session_names_its_user_as_djangos_own_engine_and_backend_do(user):
    # given: a session signed in through Django's own backend (one from before this one)
    by_django = APIClient()
    by_django.force_login(user, backend="django.contrib.auth.backends.ModelBackend")

    # then: both sessions name the user, read with the written-once statements
    assert me(signed_in(user))["user"]["id"] == user.pk
    assert me(by_django)["user"]["id"] == user.pk


def test_an_expired_session_is_anonymous_and_forgotten(user):
    client = signed_in(user)
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))

    assert me(client) == {"authenticated": False, "user": None}


def test_the_session_of_an_inactive_user_is_anonymous(user):
    client = signed_in(user)
    user.is_active = False
    user.save()

    assert me(client)["authenticated"] is False


def test_a_password_change_ends_the_other_sessions(user):
    # Django's session hash check still runs on the user the backend reads.
    client = signed_in(user)
    user.set_password("another-password-entirely")
    user.save()

    assert me(client)["authenticated"] is False


def test_a_session_key_is_a_value_never_sql(user):
    client = signed_in(user)
    client.cookies["sessionid"] = "x' OR '1'='1"

    assert me(client)["authenticated"] is False
    assert Session.objects.count() == 1
