"""`/api/auth/`: session login for browsers, tokens for scripts, who am I, log out."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import login, logout
from django.middleware.csrf import get_token
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from .drf_internals import http_request
from .errors import ErrorCode
from .schema import error_response


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    is_staff = serializers.BooleanField()


class MeSerializer(serializers.Serializer):
    authenticated = serializers.BooleanField()
    user = UserSerializer(allow_null=True)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    user = UserSerializer()


class LoginThrottle(AnonRateThrottle):
    scope = "login"


def me_payload(user: Any) -> dict[str, Any]:
    if not user.is_authenticated:
        return {"authenticated": False, "user": None}
    return {
        "authenticated": True,
        "user": {"id": user.pk, "username": user.get_username(), "is_staff": user.is_staff},
    }


class CsrfView(APIView):
    """Sets the `csrftoken` cookie a browser must echo in `X-CSRFToken` on writes."""

    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_csrf",
        summary="Get a CSRF token (and its cookie)",
        tags=["auth"],
        responses=inline_serializer("CsrfToken", {"csrf_token": serializers.CharField()}),
    )
    def get(self, request: Request) -> Response:
        return Response({"csrf_token": get_token(request)})


class LoginView(APIView):
    """Session login for same-origin browsers (CSRF-protected like every session write)."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [LoginThrottle]

    @extend_schema(
        operation_id="auth_login",
        summary="Sign in with a session (browsers)",
        tags=["auth"],
        request=AuthTokenSerializer,
        responses={200: MeSerializer, 403: error_response(ErrorCode.PERMISSION_DENIED)},
    )
    def post(self, request: Request) -> Response:
        # Login CSRF: an attacker must not sign a victim's browser into the attacker's account.
        SessionAuthentication().enforce_csrf(request)
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        login(http_request(request), user)
        return Response(me_payload(user))


class TokenView(APIView):
    """Exchange a username and password for an API token (scripts, other origins)."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [LoginThrottle]

    @extend_schema(
        operation_id="auth_token_create",
        summary="Get an API token (scripts)",
        tags=["auth"],
        request=AuthTokenSerializer,
        responses=TokenSerializer,
    )
    def post(self, request: Request) -> Response:
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key, "user": me_payload(user)["user"]})


class MeView(APIView):
    """Who the caller is; anonymous callers get `authenticated: false`."""

    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_me", summary="Who am I", tags=["auth"], responses=MeSerializer
    )
    def get(self, request: Request) -> Response:
        return Response(me_payload(request.user))


class LogoutView(APIView):
    """Ends the session; with token auth, revokes the token. Safe to repeat."""

    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_logout",
        summary="Sign out (ends the session, revokes the token)",
        tags=["auth"],
        request=None,
        responses={204: None},
    )
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, Token):
            request.auth.delete()
        logout(http_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
