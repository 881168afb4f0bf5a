"""GET /healthz: is the database reachable, and the Celery broker?

A load balancer asks every few seconds: an unhealthy answer is logged once when the state turns (per
process), and again when it is healthy, not once per probe."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from config.celery import app as celery_app
from web.statelog import StateLog

logger = logging.getLogger("config.health")
_state = StateLog(logger)


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _check_broker() -> str:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return "ok"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            checks[name] = check()
        except Exception as exc:  # any failure is the answer here, not a crash
            checks[name] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    response = JsonResponse(
        {"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503
    )
    if healthy:
        _state.up("healthy again: %s", checks)
    else:
        _state.down("unhealthy: %s", checks, report=checks)
        response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log.log_response skips it
    return response
