"""Failed logins counted on every way in (the login page, the admin's, the API's token endpoint), per
client address and username and, with a higher limit, per address. Past either limit, a login fails
without its password being checked until the window (WINDOW seconds from the first failure) ends.

Counted in the database, not the cache: logins need the database anyway (users, sessions, tokens), so
this adds no new dependency, and a Redis outage neither blocks logins (the cache used to answer 500) nor
lifts the limit (as failing open would, for as long as the outage lasts). Failed logins are rare, so the
one or two statements each costs do not matter.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone

from web.models import LoginFailures
from web.usernames import lookalike_taken

WINDOW = 600
# Where the backend leaves the refusal for the form or view that asked (authenticate() only says None).
_REFUSAL = "pairwise_login_refusal"


def client_address(request: HttpRequest) -> str:
    """The connection's address; behind our proxy, the one address it appended to X-Forwarded-For (the
    rest of that header is the client's to write, so it never names the client)."""
    if getattr(settings, "BEHIND_HTTPS_PROXY", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return str(request.META.get("REMOTE_ADDR", ""))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _keys(request: HttpRequest, username: str) -> dict[str, tuple[int, Literal["user", "address"]]]:
    """Each key with its limit and what it counts: the address and username, and the address alone."""
    address = client_address(request)
    return {
        _digest("user", address, username.casefold()): (settings.PAIRWISE_LOGIN_FAILURES_PER_USER, "user"),
        _digest("address", address): (settings.PAIRWISE_LOGIN_FAILURES_PER_ADDRESS, "address"),
    }


@dataclass(frozen=True)
class Refusal:
    """Why a login was refused without a look at its password, and for how long."""

    scope: Literal["user", "address"]  # this username from this address; any username from this address
    retry_after: int  # seconds

    @property
    def reason(self) -> str:
        which = " with this username" if self.scope == "user" else ""
        return f"Too many failed logins from your address{which}."

    def message(self) -> str:
        return f"{self.reason} Try again in {math.ceil(self.retry_after / 60)} minutes."


def refusal(request: HttpRequest, username: str) -> Refusal | None:
    """The refusal for a login as `username` from this request's address, or None while both are under
    their limits (one statement)."""
    now = timezone.now()
    keys = _keys(request, username)
    over = [
        Refusal(keys[key][1], math.ceil((ends - now).total_seconds()))
        for key, failures, ends in LoginFailures.objects.filter(
            key__in=keys, window_ends_at__gt=now
        ).values_list("key", "failures", "window_ends_at")
        if failures >= keys[key][0]
    ]
    return max(over, key=lambda r: r.retry_after, default=None)


def refusal_of(request: HttpRequest | None) -> Refusal | None:
    """The refusal the backend gave this request's login, if it gave one."""
    return getattr(request, _REFUSAL, None)


def failure_record(request: HttpRequest, username: str) -> None:
    """Count a failed login for the address and username and for the address: one upsert each, starting
    a new window where the old one ended, after deleting the windows that ended."""
    now = timezone.now()
    LoginFailures.objects.filter(window_ends_at__lte=now).delete()
    table = connection.ops.quote_name(LoginFailures._meta.db_table)
    live = f"{table}.window_ends_at > %s"
    # One statement per key, so concurrent failures all count (PostgreSQL and SQLite both have upserts).
    sql = (
        f"INSERT INTO {table} ({connection.ops.quote_name('key')}, failures, window_ends_at) "
        f"VALUES (%s, 1, %s) ON CONFLICT ({connection.ops.quote_name('key')}) DO UPDATE SET "
        f"failures = CASE WHEN {live} THEN {table}.failures + 1 ELSE 1 END, "
        f"window_ends_at = CASE WHEN {live} THEN {table}.window_ends_at ELSE excluded.window_ends_at END"
    )
    at = connection.ops.adapt_datetimefield_value
    ends, now_value = at(now + timedelta(seconds=WINDOW)), at(now)
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(key, ends, now_value, now_value) for key in _keys(request, username)])


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend, refusing a login over either limit before it looks at the password (so a
    correct guess there proves nothing), and counting each login whose password it checked and refused."""

    def authenticate(
        self, request: HttpRequest | None, username: Any = None, password: Any = None, **kwargs: Any
    ) -> Any:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if request is None or username is None or password is None:
            return super().authenticate(request, username=username, password=password, **kwargs)
        # Usernames are one name whatever their case (web.usernames): log in as the account so named,
        # and count and refuse under that name, as the database compares names (UPPER), not as Python
        # folds them (a dotless i is an i to PostgreSQL's UPPER, not to casefold).
        username = lookalike_taken(str(username)) or username
        refused = refusal(request, str(username))
        if refused is not None:
            setattr(request, _REFUSAL, refused)
            raise PermissionDenied  # authenticate() stops here and reports a failed login
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            failure_record(request, str(username))
        return user
