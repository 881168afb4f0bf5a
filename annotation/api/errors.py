"""Every API error as {"detail": ..., "code": ...}, plus "errors" where items are checked one by one."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.fields import get_error_detail
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from web.errors import ServiceError


def _flatten(detail: Any, field: str | None = None) -> list[dict[str, Any]]:
    """DRF's nested error detail as a flat list of {"field", "message"}; nested fields as "a.0.b"."""
    if isinstance(detail, dict):
        errors = []
        for key, value in detail.items():
            name = None if key in ("non_field_errors", NON_FIELD_ERRORS) else str(key)
            errors.extend(_flatten(value, name if field is None or name is None else f"{field}.{name}"))
        return errors
    if isinstance(detail, list):
        return [error for value in detail for error in _flatten(value, field)]
    return [{"field": field, "message": str(detail)}]


def _unsupported_media_type(context: dict[str, Any]) -> exceptions.UnsupportedMediaType:
    """DRF's 415, naming what the view does accept, so the caller can fix the request at once."""
    request = context.get("request")
    sent = getattr(request, "content_type", "") or ""
    accepted = dict.fromkeys(parser.media_type for parser in getattr(request, "parsers", None) or [])
    media_type = sent.split(";")[0].strip()  # without parameters such as charset
    what = f'Unsupported media type "{media_type}"' if media_type else "No Content-Type header"
    return exceptions.UnsupportedMediaType(sent, detail=f"{what}. Send one of: {', '.join(accepted)}.")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        body: dict[str, Any] = {"detail": exc.detail, "code": exc.code, **exc.extra}
        return Response(body, status=exc.status)
    # Django's own exceptions become DRF's, so they get a code like the rest.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        # A model's full_clean() or a validator inside a service: bad input, never a 500.
        exc = exceptions.ValidationError(detail=get_error_detail(exc))
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        exc = _unsupported_media_type(context)
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            {"detail": "Invalid input.", "code": "invalid", "errors": _flatten(exc.detail)},
            status=exc.status_code,
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        response.data = {"detail": str(exc.detail), "code": codes if isinstance(codes, str) else "error"}
    return response
