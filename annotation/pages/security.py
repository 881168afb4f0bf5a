"""Content-Security-Policy for every response of the site.

The pages show text written by models and by project admins. It is escaped where it is shown; this
header is the second wall: even if some text ever reached the page as markup, the browser runs no script
but our own files (no inline script, no event-handler attribute, no javascript: URL), loads nothing from
another origin (the site works air-gapped), and lets no other site frame it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

HEADER = "Content-Security-Policy"

POLICY: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def policy(**changes: str) -> str:
    """The header's value; keyword arguments replace directives (style_src= for style-src)."""
    directives = POLICY | {name.replace("_", "-"): value for name, value in changes.items()}
    return "; ".join(f"{name} {value}" for name, value in directives.items())


DEFAULT = policy()


def csp_override(**changes: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view whose page needs more than the default (a third-party page we do not write)."""
    value = policy(**changes)

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            response = view(request, *args, **kwargs)
            response[HEADER] = value
            return response

        return wrapped

    return decorate


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        # Django's DEBUG error pages carry inline styles and scripts; a developer should see them whole.
        if settings.DEBUG and response.status_code >= 400:
            return response
        if HEADER not in response:
            response[HEADER] = DEFAULT
        return response
