"""Handshake checks for every WebSocket: Origin policy first, then session or token auth."""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import parse_cookie
from django.http.request import split_domain_port, validate_host
from rest_framework.authtoken.models import Token

Scope = dict[str, Any]

TOKEN_SCHEMES = (b"token", b"bearer")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


def origin_allowed(origin: str, host: str | None) -> bool:
    """Same origin as the Host the browser connected to, or listed in CORS_ALLOWED_ORIGINS."""
    if origin in settings.CORS_ALLOWED_ORIGINS:
        return True
    if not host:
        return False
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == host


def bearer_token(scope: Scope) -> str | None:
    """The key from `Authorization: Token <key>` (or `Bearer <key>`); never read from the URL."""
    raw = _header(scope, b"authorization")
    if raw is None:
        return None
    scheme, _, key = raw.strip().partition(b" ")
    if scheme.lower() not in TOKEN_SCHEMES or not key.strip():
        return ""
    return key.strip().decode("latin1")


class OriginGuard:
    """Refuses cross-site sockets: a foreign Origin always, a missing or `null` one with a cookie.

    Browsers always send Origin, so a socket without one comes from a script; such a socket
    may not ride on a session cookie (that is what a cross-site attack would look like).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        raw_origin = _header(scope, b"origin")
        origin = raw_origin.decode("latin1") if raw_origin is not None else None
        host_header = _header(scope, b"host")
        host = host_header.decode("latin1") if host_header is not None else None
        if origin in (None, "null"):
            allowed = not self._has_session_cookie(scope)
        else:
            allowed = origin_allowed(origin, host)
        if not allowed:
            return await WebsocketDenier()(scope, receive, send)
        return await self.inner(scope, receive, send)

    @staticmethod
    def _has_session_cookie(scope: Scope) -> bool:
        cookie = _header(scope, b"cookie") or b""
        return settings.SESSION_COOKIE_NAME.encode() + b"=" in cookie


def session_key(scope: Scope) -> str | None:
    """The session key in the handshake's cookie, if any."""
    cookies = parse_cookie((_header(scope, b"cookie") or b"").decode("latin1"))
    return cookies.get(settings.SESSION_COOKIE_NAME)


@database_sync_to_async
def session_user(session_key: str | None) -> AbstractBaseUser | AnonymousUser:
    """The user a session cookie names (Django's own checks, incl. the session hash)."""
    if not session_key:
        return AnonymousUser()
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]


class SessionAuthMiddleware:
    """Read-only session auth: the cookie names the user, nothing is written back.

    Channels' SessionMiddleware wraps `send` to save sessions, which costs a check on every
    frame a socket is sent; sockets here never change the session, so no wrapper is needed.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        user = await session_user(session_key(scope))
        return await self.inner(dict(scope, user=user), receive, send)


@database_sync_to_async
def user_for_token(key: str) -> AbstractBaseUser | None:
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    """Authenticates a socket by its `Authorization` header; a bad token is refused, not ignored."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        key = bearer_token(scope)
        if key is not None:
            user = await user_for_token(key) if key else None
            if user is None:
                return await WebsocketDenier()(scope, receive, send)
            scope = dict(scope, user=user, auth_method="token")
        return await super().__call__(scope, receive, send)


def websocket_security_stack(inner: Any) -> Any:
    """Origin check, then session cookie auth, then token auth (which wins when both are sent)."""
    return OriginGuard(SessionAuthMiddleware(TokenAuthMiddleware(inner)))
