"""The REST API's plumbing, shared by every app's endpoints: the base views with the request body limit,
cursor pagination, the staff permissions, refusing unknown fields, the error answers in the schema, and the
exception handler that gives every error the shape {"detail": ..., "code": ...}, plus "errors" where items
are checked one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.fields import get_error_detail
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from web.errors import ServiceError, TooLarge, add_lines
from web.outages import DETAIL as OUTAGE_DETAIL
from web.outages import is_database_outage, outage_answer

# Views


def error_response(description: str) -> OpenApiResponse:
    """An error answer in an endpoint's schema (for extend_schema's responses): {"detail", "code"}."""
    return OpenApiResponse(OpenApiTypes.OBJECT, description=description)


class BodyLimitMixin:
    # Refuses a request body over the view's `body_limit` (DATA_UPLOAD_MAX_MEMORY_SIZE, the imports' limit,
    # unless the view sets a smaller one: a judgment is small) before anything reads it: DRF's parsers read
    # the raw stream, so Django's own check (on request.body and forms) never runs. Checked after
    # authentication and permissions: strangers learn nothing, not even the limit. (A comment, not a
    # docstring: the schema would show a docstring as every endpoint's description.)
    body_limit: int | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        limit = self.body_limit or settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django reads no body at all without a valid length.
        if limit is not None and length > limit:
            raise TooLarge(f"The request body is {length} bytes; the limit is {limit} bytes. Split it.")


class ApiView(BodyLimitMixin, APIView):
    pass


class GenericApiView(BodyLimitMixin, GenericAPIView):
    pass


# Pagination: stable under concurrent inserts, no OFFSET scans.


class IdCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def decode_cursor(self, request: Request) -> Any:
        # A cursor that decodes to none of DRF's tokens (offset, reverse, position) is no link DRF wrote:
        # refused, where DRF would serve the first page again as if it were the next.
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is None and not cursor.offset and not cursor.reverse:
            raise exceptions.NotFound(self.invalid_cursor_message)
        return cursor

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except (ValueError, DjangoValidationError):
            # A cursor whose position is no value of the ordering's field ("p=" or "p=x" for an id):
            # the filter on it fails, and DRF would answer 500.
            if request.query_params.get(self.cursor_query_param) is None:
                raise
            raise exceptions.NotFound(self.invalid_cursor_message) from None


# Permissions: staff-only endpoints, and staff-only writes on otherwise readable ones.


class IsStaff(BasePermission):
    """Active staff only. Anonymous callers get 401 (DRF's authentication check), others 403."""

    message = "Only staff may do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class IsStaffOrReadOnly(IsStaff):
    """Any signed-in user may read (what they may see is the selectors' business); staff may write."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if request.method in SAFE_METHODS:
            return bool(user and user.is_authenticated and user.is_active)
        return super().has_permission(request, view)


# Serializers

# A request body's type as a caller who wrote JSON would name it.
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false"}


class StrictFieldsMixin:
    """Refuse fields the serializer does not know, and values of the wrong JSON type, where DRF would drop
    the one and convert the other without a word.

    A typo such as `judgements_per_pair` would otherwise answer 201 with the default in its place, and
    `"strength": "2"`, `2.0` or `"rationale": 123` would pass as 2 and "123". In a JSON body each field
    takes its own JSON type only (an integer, a number, a string, true or false; list items alike), the one
    rule of every endpoint; query strings and form posts are text and keep DRF's parsing. Read-only fields
    (`created_at`) are known: a client may send back what it read, and they are ignored as before. Each
    problem is an error of its own field, beside the errors of the other fields.
    """

    # What a Django form posts along with its fields (the token view takes form posts).
    _FORM_EXTRAS = frozenset({"csrfmiddlewaretoken"})

    fields: Any

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            # DRF's own words here ("Expected a dictionary, but got list") are Python's, not JSON's.
            kind = _JSON_TYPES.get(type(data), type(data).__name__)
            message = f"The body must be a JSON object with fields {self._allowed()}; got {kind}."
            raise serializers.ValidationError({"non_field_errors": [message]})
        problems = self._unknown_field_errors(data)
        if not isinstance(data, QueryDict):
            for name, value in data.items():
                field = self.fields.get(name)
                wrong = None if field is None or field.read_only else json_type_error(field, value)
                if wrong is not None:
                    problems[str(name)] = [wrong] if isinstance(wrong, str) else wrong
        try:
            value = super().to_internal_value(data)  # type: ignore[misc]
        except serializers.ValidationError as exc:
            if problems and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **problems}) from None
            raise
        if problems:
            raise serializers.ValidationError(problems)
        return value

    def _unknown_field_errors(self, data: Mapping[str, Any]) -> dict[str, list[str]]:
        extras = self._FORM_EXTRAS if isinstance(data, QueryDict) else frozenset()
        unknown = [key for key in data if key not in self.fields and key not in extras]
        return {str(key): [f"Unknown field; allowed: {self._allowed()}."] for key in unknown}

    def _allowed(self) -> str:
        return ", ".join(name for name, field in self.fields.items() if not field.read_only)


def json_type_error(field: serializers.Field, value: Any) -> Any:
    """Why a JSON value does not fit a field's type, as DRF words a field's errors (a message; for a list,
    {index: [message]} of its wrong items), or None (null is the field's allow_null to judge; a field of
    another kind judges its value itself)."""
    if value is None:
        return None
    if isinstance(field, serializers.ListField):
        items = value if isinstance(value, list) else []
        wrong = {
            i: [e] for i, item in enumerate(items) if (e := json_type_error(field.child, item)) is not None
        }
        return wrong or None
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "Must be an integer."
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return None if number else "Must be a number."
    if isinstance(field, serializers.MultipleChoiceField):
        return None
    if isinstance(field, serializers.CharField | serializers.ChoiceField | serializers.DateTimeField):
        return None if isinstance(value, str) else "Must be a string."
    return None


# Errors


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
    if is_database_outage(exc):  # not a bug: the caller should try again (docs/API.md)
        return outage_answer(exc, Response({"detail": OUTAGE_DETAIL, "code": "unavailable"}, status=503))
    if isinstance(exc, ServiceError):
        # The body the view read, if it was read (never parsed again here): a JSON Lines body's items
        # carry their lines, which each error naming an item gets too.
        add_lines(exc, getattr(context.get("request"), "_full_data", None))
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
