"""Errors the services of every app raise. Each carries the HTTP status and the stable `code` that the API
returns (web.api.exception_handler answers them)."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400
    default_code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.extra = extra


class Invalid(ServiceError):
    """Bad input; `errors` lists the items at fault: {"index"?, "field", "message"}."""

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None, code: str | None = None):
        super().__init__(detail, code=code, errors=errors or [])
        self.errors = errors or []


class NotFound(ServiceError):
    status = 404
    default_code = "not_found"


class Forbidden(ServiceError):
    status = 403
    default_code = "permission_denied"


class Conflict(ServiceError):
    status = 409
    default_code = "conflict"


class TooLarge(ServiceError):
    status = 413
    default_code = "too_large"


def items_invalid(errors: list[dict[str, Any]], total: int) -> Invalid:
    """The refusal of an all-or-nothing import: how many of its items are at fault, every error listed."""
    bad = len({error.get("index") for error in errors})
    verb = "is" if bad == 1 else "are"
    return Invalid(f"{bad} of {total} items {verb} invalid; nothing was stored.", errors=errors)


def too_many_items(total: int, limit: int) -> TooLarge:
    return TooLarge(f"{total} items in one request; the limit is {limit}. Split them; nothing was stored.")


def add_lines(refusal: ServiceError, items: Any) -> None:
    """Each error of the refusal that names an item of a JSON Lines body by its index gets that item's line
    too (items read from JSON Lines carry their `lines`): the services count items, a person looks for
    lines."""
    lines, errors = getattr(items, "lines", None), refusal.extra.get("errors")
    if lines is None or not isinstance(errors, list):
        return
    for error in errors:
        index = error.get("index") if isinstance(error, dict) else None
        if isinstance(index, int) and 0 <= index < len(lines) and "line" not in error:
            error["line"] = lines[index]
