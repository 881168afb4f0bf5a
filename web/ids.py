"""Object ids in URLs: a positive 64-bit integer (a bigint primary key) in plain ASCII digits, or no match
(404). Django's `int` converter takes any length, and an id past 2**63 - 1 reached the database: SQLite's
driver raised OverflowError (a 500) where PostgreSQL found nothing."""

from __future__ import annotations

import re

from django.urls import register_converter

MAX_ID = 2**63 - 1
_ID = re.compile(r"[1-9][0-9]{0,18}")


def parse_id(text: str) -> int | None:
    """The id that text names, or None. ASCII digits without a leading zero only: str.isdigit() takes "²"
    (int() then fails) and other scripts' digits (which int() reads), so one object would answer under
    many addresses."""
    if _ID.fullmatch(text) is None or int(text) > MAX_ID:
        return None
    return int(text)


class IdConverter:
    regex = _ID.pattern

    def to_python(self, value: str) -> int:
        parsed = parse_id(value)
        if parsed is None:
            raise ValueError(value)  # the URL does not match: 404
        return parsed

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
