"""How REST requests are authenticated: DRF's token scheme and the session's user, each
looked up with SQL written once.

Its own module: DRF reads `DEFAULT_AUTHENTICATION_CLASSES` while `rest_framework.views` is
being imported, so this must not import views.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import backends, get_user_model
from django.contrib.auth.models import AbstractBaseUser, User
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from realtime.kernel import logcontext, sql


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication (`Authorization: Token <key>`), its token and user read faster.

    DRF reads them with `Token.objects.select_related("user").get(key=key)`, whose SQL Django
    builds again for every request: 1.0 ms of CPU, more than a whole bare Django view costs
    here. This is that query written once, run on the driver's cursor (`realtime.kernel.sql`,
    about 0.05 ms with the user's instance); same answers, same refusals.
    """

    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, Token]:
        found = sql.row(_token_user_sql(), [key])
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user = _users().load(found)
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if logcontext.request_id.get() is not None:  # on the request's log lines from here
            logcontext.bind(user_id=user.pk)
        # What a request's `auth` is used for: its key and user (signing out deletes it).
        return user, Token(key=key, user=user)


class ModelBackend(backends.ModelBackend):
    """Django's `ModelBackend`, reading a signed-in session's user with SQL written once.

    Every request signed in with the session cookie (REST and socket handshakes alike) reads
    its user: `User.objects.get(pk=...)` built that SQL again each time, 0.24 ms of CPU,
    against 0.09 ms through `raw()` and less on the driver's cursor (`realtime.kernel.sql`).
    Same users, same refusals (an inactive user is none).
    """

    def get_user(self, user_id: Any) -> User | None:
        found = sql.row(_user_sql(), [user_id])
        user = None if found is None else _users().load(found)
        if user is None or not self.user_can_authenticate(user):
            return None
        if logcontext.request_id.get() is not None:  # a REST request's (a socket binds its own)
            logcontext.bind(user_id=user.pk)
        return user


@cache
def _users() -> sql.Rows[Any]:
    """The user model's rows (the model is known once the apps are loaded)."""
    return sql.Rows(get_user_model())


@cache
def _user_sql() -> str:
    """The user with the primary key given as the one parameter (at most one row)."""
    users = get_user_model()._meta
    quote = connection.ops.quote_name
    table, key = quote(users.db_table), quote(column_of(users.pk))
    return f"SELECT {_users().columns()} FROM {table} WHERE {key} = %s"  # noqa: S608


@cache
def _token_user_sql() -> str:
    """The user whose token has the key given as the one parameter (at most one row)."""
    users, tokens = get_user_model()._meta, Token._meta
    user_table, user_id = users.db_table, column_of(users.pk)
    token_table, token_key = tokens.db_table, column_of(tokens.pk)
    token_user = column_of(tokens.get_field("user"))
    quote = connection.ops.quote_name
    # Only the models' own table and column names are formatted in; the key is a parameter.
    return (
        f"SELECT {_users().columns('u')} FROM {quote(user_table)} u"  # noqa: S608
        f" INNER JOIN {quote(token_table)} t ON t.{quote(token_user)} = u.{quote(user_id)}"
        f" WHERE t.{quote(token_key)} = %s"
    )


def column_of(field: Any) -> str:
    """The database column of a concrete model field."""
    column = field.column
    assert isinstance(column, str)  # a concrete field has its column
    return column
