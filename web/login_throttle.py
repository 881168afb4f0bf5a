"""Failed logins counted per client address, on every way in: the login page, the admin's, and the API's
token endpoint (which also has DRF's own rate limit). After LIMIT failures within WINDOW seconds,
authentication from that address fails without a password being checked, until the window ends.

Counted in the cache (Redis when configured, so every web process counts the same).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest

LIMIT = 10
WINDOW = 600


def client_address(request: HttpRequest) -> str:
    """The connection's address; behind our proxy, the one address it appended to X-Forwarded-For (the
    rest of that header is the client's to write, so it never names the client)."""
    if getattr(settings, "BEHIND_HTTPS_PROXY", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return str(request.META.get("REMOTE_ADDR", ""))


def _key(request: HttpRequest) -> str:
    return f"login-failures:{client_address(request)}"


def is_throttled(request: HttpRequest) -> bool:
    return (cache.get(_key(request)) or 0) >= LIMIT


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend, refusing every login from an address over the limit before it looks at the
    password (so a correct guess there proves nothing)."""

    def authenticate(
        self, request: HttpRequest | None, username: Any = None, password: Any = None, **kwargs: Any
    ) -> Any:
        if request is not None and is_throttled(request):
            raise PermissionDenied  # authenticate() stops here and reports a failed login
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed)
def _count_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    if request is None:
        return
    key = _key(request)
    cache.add(key, 0, WINDOW)  # the window starts at the first failure
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, WINDOW)
