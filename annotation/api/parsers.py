"""Request bodies: JSON and JSON Lines, read strictly by rm_training.jsonl (the one reader of both).

Whatever the endpoint, a body whose text cannot be stored (not UTF-8, NaN, a NUL or a lone surrogate in any
string or key, metadata included) is refused here with 400 before a view sees it, in the per-item error
shape: for a list of items (a JSON list, {"pairs": [...]}, or JSON Lines) each error names the item's
index, and its line for JSON Lines.
"""

from __future__ import annotations

from typing import Any

from rest_framework.parsers import BaseParser

from rm_training import jsonl
from web.errors import Invalid

# The keys that wrap a list of items in an import body ({"pairs": [...]}, {"judgments": [...]}).
_ITEM_LISTS = frozenset({"pairs", "judgments"})


def _located(path: tuple[str | int, ...], body: Any) -> dict[str, Any]:
    """{"index", "field"} of a path into the body: items of a list body, or of {"pairs": [...]} and the
    like; any other body's fields are named in full ("usernames.0")."""
    if isinstance(body, list) and path:
        return {"index": path[0], "field": jsonl.dotted(path[1:])}
    if isinstance(body, dict) and set(body) <= _ITEM_LISTS and len(path) > 1:
        return {"index": path[1], "field": jsonl.dotted(path[2:])}
    return {"field": jsonl.dotted(path)}


def _refuse(errors: list[dict[str, Any]], what: str, *, parsed: bool) -> Invalid:
    """400 with every error; code parse_error when some text was not JSON at all, else invalid."""
    items = {e["index"] for e in errors if e.get("index") is not None}
    if not items:
        summary = f"The {what} is invalid."
    else:
        count = f"1 item of the {what} is" if len(items) == 1 else f"{len(items)} items of the {what} are"
        summary = f"{count} invalid; nothing was stored."
    return Invalid(summary, errors=errors, code="invalid" if parsed else "parse_error")


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            body = jsonl.loads(jsonl.decode(stream.read() if stream is not None else b""))
        except jsonl.JSONError as exc:
            raise _refuse([{"field": None, "message": str(exc)}], "body", parsed=False) from None
        errors = [{**_located(path, body), "message": message} for path, message in jsonl.text_problems(body)]
        if errors:
            raise _refuse(errors, "body", parsed=True)
        return body


class LinedItems(list[Any]):
    """The items of a JSON Lines body, with the line each came from (blank lines are no item)."""

    lines: list[int]


class JSONLinesParser(BaseParser):
    """One JSON value per line, parsed into a list. Every bad line is reported, not only the first."""

    media_type = "application/x-ndjson"

    # A list, where DRF's stubs expect a mapping: request.data is whatever the parser returns.
    def parse(  # type: ignore[override]
        self, stream: Any, media_type: str | None = None, parser_context: Any = None
    ) -> list[Any]:
        items = LinedItems()
        items.lines = []
        errors: list[dict[str, Any]] = []
        parsed = True
        for index, line in enumerate(jsonl.read_lines(iter(lambda: stream.read(1 << 16), b""))):
            if line.error is not None:
                errors.append(
                    {"index": index, "line": line.number, "field": line.field, "message": line.error}
                )
                parsed = parsed and line.value is not None  # None with an error: not JSON at all
            items.append(line.value)
            items.lines.append(line.number)
        if errors:
            raise _refuse(errors, "JSON Lines body", parsed=parsed)
        return items


class JSONLinesAliasParser(JSONLinesParser):
    """The same, under the other name clients send it with."""

    media_type = "application/jsonl"
