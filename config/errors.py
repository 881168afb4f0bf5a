"""JSON error answers for everything under /api/, and no trailing-slash redirects there.

DRF's views answer their own errors in the API's shape (web.api.exception_handler). What happens before or
around them is Django's: a path that matches no route, an uncaught exception, a request Django refuses.
Django answers those with HTML pages, and CommonMiddleware answers a missing trailing slash with a 301,
which `curl -s` turns into no output at all and which drops a POST's body. Under /api/ each of these is
answered here in the API's shape, {"detail": "...", "code": "..."}; elsewhere Django's pages stay.
A database outage is not a bug: it is answered 503 with Retry-After, on pages as in the API (web.outages).
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.common import CommonMiddleware
from django.urls import is_valid_path
from django.views import defaults

from web.outages import DETAIL as OUTAGE_DETAIL
from web.outages import is_database_outage, outage_answer

API_PREFIX = "/api/"


def is_api_path(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def _error(detail: str, code: str, status: int) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status)


def api_not_found(request: HttpRequest) -> JsonResponse:
    """A 404 that says which URL was asked for and, where one exists, the URL that was meant."""
    path = request.path_info
    detail = f"No endpoint {request.method} {path}"
    urlconf = getattr(request, "urlconf", None)
    # Only the missing slash is guessed: it is the one mistake a script makes often, and redirecting
    # would lose a POST's body, so the caller is told instead.
    if not path.endswith("/") and is_valid_path(f"{path}/", urlconf):
        return _error(f"{detail}; did you mean {path}/ (with the trailing slash)?", "not_found", 404)
    return _error(f"{detail}. The endpoints are listed at /api/docs/.", "not_found", 404)


# Django's handler400/403/404/500 (config.urls). They run with DEBUG off; with DEBUG on, Django shows its
# debug pages for 500s, which is what a developer wants, and ApiCommonMiddleware still answers 404s.


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request):
        # Django's refusals (a disallowed host, too many fields): their text is for the logs, not callers.
        return _error("Bad request.", "bad_request", 400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request):
        return _error("You do not have permission to perform this action.", "permission_denied", 403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


# Pages' answer to a database outage: no template, no context processors, nothing that might query.
OUTAGE_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pairwise is unavailable</title></head>
<body><h1>Unavailable for a moment</h1><p>{OUTAGE_DETAIL} Reload this page then.</p></body></html>
"""


def server_error(request: HttpRequest) -> HttpResponse:
    # Called while the exception is handled (django.core.handlers.exception), from a view or a middleware.
    exc = sys.exc_info()[1]
    if exc is not None and is_database_outage(exc):
        if is_api_path(request):
            return outage_answer(exc, _error(OUTAGE_DETAIL, "unavailable", 503))
        return outage_answer(exc, HttpResponse(OUTAGE_PAGE, status=503))
    if is_api_path(request):
        # API.md: a 500 is always a bug. The traceback goes to the log (django.request), not the caller.
        return _error("Server error. It has been logged; please report it.", "server_error", 500)
    return defaults.server_error(request)


class ApiCommonMiddleware(CommonMiddleware):
    """Django's CommonMiddleware, without the trailing-slash redirect under /api/.

    A redirect turns a POST into a GET without its body (or, under DEBUG, into a RuntimeError); a
    script sees an empty answer and silently does nothing. Under /api/ the caller gets a JSON 404
    that names the URL with the slash instead.
    """

    def should_redirect_with_slash(self, request: HttpRequest) -> bool:
        if is_api_path(request):
            return False
        return super().should_redirect_with_slash(request)

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        # A path that matched no route never reached a view (resolver_match is unset). With DEBUG off,
        # handler404 already answered JSON; with DEBUG on, Django's HTML debug page did, so it is
        # replaced here: scripts under development get the same answer as in production.
        if (
            settings.DEBUG
            and response.status_code == 404
            and request.resolver_match is None
            and is_api_path(request)
        ):
            response = api_not_found(request)
        return super().process_response(request, response)
