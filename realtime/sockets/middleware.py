"""Handshake checks for every WebSocket: Origin policy first, then session or token auth."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import parse_cookie
from django.http.request import split_domain_port, validate_host
from rest_framework.authtoken.models import Token

from .database import on_database_thread

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


def handshake_origin_allowed(scope: Scope) -> bool:
    """Refuses cross-site sockets: a foreign Origin always, a missing or `null` one with a cookie.

    Browsers always send Origin, so a socket without one comes from a script; such a socket
    may not ride on a session cookie (that is what a cross-site attack would look like).
    """
    raw_origin = _header(scope, b"origin")
    origin = raw_origin.decode("latin1") if raw_origin is not None else None
    if origin in (None, "null"):
        cookie = _header(scope, b"cookie") or b""
        return settings.SESSION_COOKIE_NAME.encode() + b"=" not in cookie
    host_header = _header(scope, b"host")
    return origin_allowed(origin, host_header.decode("latin1") if host_header else None)


def session_key(scope: Scope) -> str | None:
    """The session key in the handshake's cookie, if any."""
    cookies = parse_cookie((_header(scope, b"cookie") or b"").decode("latin1"))
    return cookies.get(settings.SESSION_COOKIE_NAME)


@on_database_thread
def session_user(session_key: str) -> AbstractBaseUser | AnonymousUser:
    """The user a session cookie names (Django's own checks, incl. the session hash)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]


@on_database_thread
def user_for_token(key: str) -> AbstractBaseUser | None:
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


# A socket's path to its consumer and the URL's keyword arguments, or None: no such route.
Router = Callable[[str], tuple[Any, dict[str, str]] | None]


class HandshakeGate:
    """Every socket's handshake: the Origin policy, the route, then who the user is.

    A token (`Authorization` header) wins over a session cookie, and a bad token is refused,
    not ignored; the session is only read, never written back (Channels' SessionMiddleware
    wraps `send` to save it, a check on every frame a socket is sent). A path with no route is
    refused too. One layer, not one per check, and the route found here rather than by
    Channels' `URLRouter`: each ASGI layer keeps a coroutine frame, often a scope copy too, for
    as long as its socket is open.
    """

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        found = self.router(scope["path"])
        if found is None or not handshake_origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        consumer, kwargs = found
        route = {"url_route": {"args": (), "kwargs": kwargs}}
        token = bearer_token(scope)
        if token is None:
            session = session_key(scope)  # none: anonymous, with no trip to the database thread
            user = await session_user(session) if session else AnonymousUser()
            scope = dict(scope, user=user, **route)
        else:
            found_user = await user_for_token(token) if token else None
            if found_user is None:
                return await WebsocketDenier()(scope, receive, send)
            scope = dict(scope, user=found_user, auth_method="token", **route)
        return await consumer(scope, receive, send)


def websocket_security_stack(router: Router) -> Any:
    """The route, the Origin check, then token or session cookie auth (the token wins when
    both are sent)."""
    return HandshakeGate(router)
