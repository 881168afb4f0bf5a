"""Every API error as {"detail": ..., "code": ...}, plus "errors" where items are checked one by one."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotation.errors import ServiceError


def _flatten(detail: Any, field: str | None = None) -> list[dict[str, Any]]:
    if isinstance(detail, dict):
        return [e for key, value in detail.items() for e in _flatten(value, None if key == "non_field_errors" else key)]
    if isinstance(detail, list):
        return [e for value in detail for e in _flatten(value, field)]
    return [{"field": field, "message": str(detail)}]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        body: dict[str, Any] = {"detail": exc.detail, "code": exc.code, **exc.extra}
        return Response(body, status=exc.status)
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            {"detail": "Invalid input.", "code": "invalid", "errors": _flatten(exc.detail)}, status=exc.status_code
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        response.data = {"detail": str(exc.detail), "code": codes if isinstance(codes, str) else "error"}
    return response
