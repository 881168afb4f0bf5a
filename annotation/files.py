"""Files in and out over HTTP, for the REST API and the admin alike: the body forms an import takes, an
uploaded file read by the API's own parsers (rm_training.jsonl underneath), and the streamed export answers.

One home, so that a file the API accepts is a file the admin accepts, and an export downloaded from the
admin is the same bytes as the API's (the same selectors, the same filters).
"""

from __future__ import annotations

from typing import IO, Any

from django.http import StreamingHttpResponse

from annotation import selectors
from annotation.api.parsers import JSONLinesParser, JSONParser
from annotation.models import Project
from web.errors import Invalid


def import_items(data: Any, what: str) -> list[Any]:
    """The three body forms of an import: a JSON list, {what: [...]}, or JSON Lines (parsed into a list)."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and set(data) == {what} and isinstance(data[what], list):
        return data[what]
    raise Invalid(f'The body must be a JSON list of {what}, {{"{what}": [...]}}, or JSON Lines.')


def upload_is_json_lines(name: str, head: bytes) -> bool:
    """A file is JSON Lines when its name says so (.jsonl, .ndjson); a .json file is one JSON document; any
    other name is judged by its first character: a JSON list starts with "[", a JSON Lines file of objects
    with "{" (a {"pairs": [...]} document must then be named .json)."""
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return True
    if lowered.endswith(".json"):
        return False
    return not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def upload_items(stream: IO[bytes], *, name: str, what: str) -> list[Any]:
    """The items of an uploaded file, read as the API reads a request body of the same form; an Invalid
    (with every bad line or item) when it cannot be."""
    head = stream.read(64)
    stream.seek(0)
    parser = JSONLinesParser() if upload_is_json_lines(name, head) else JSONParser()
    return import_items(parser.parse(stream), what)


def file_response(chunks: Any, *, content_type: str, filename: str) -> StreamingHttpResponse:
    """A download, streamed from ``chunks``, under ``filename``; never sniffed as another type."""
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def judgments_export(*, project: Project, extension: str, query: dict[str, Any]) -> StreamingHttpResponse:
    """judgments.jsonl or .csv, streamed; ``query`` as JudgmentsExportQuerySerializer validated it."""
    query = dict(query)
    raw = query.pop("raw", False)  # JSON Lines is written as it is: no program runs a JSON string
    filters = selectors.ExportFilter(**query)
    slug = project.slug
    if extension == "csv":
        rows = selectors.judgment_rows(project=project, filters=filters)
        chunks = selectors.as_csv(rows, selectors.JUDGMENT_COLUMNS, raw=raw)
        return file_response(chunks, content_type="text/csv; charset=utf-8", filename=f"{slug}-judgments.csv")
    lines = selectors.judgment_lines(project=project, filters=filters)
    return file_response(lines, content_type="application/x-ndjson", filename=f"{slug}-judgments.jsonl")


def preferences_export(*, project: Project, query: dict[str, Any]) -> StreamingHttpResponse:
    """preferences.jsonl, streamed; ``query`` as PreferencesQuerySerializer validated it."""
    query = dict(query)
    conversational = query.pop("format", "standard") == "conversational"
    rows = selectors.preference_rows(
        project=project, filters=selectors.ExportFilter(**query), conversational=conversational
    )
    return file_response(
        selectors.as_jsonl(rows),
        content_type="application/x-ndjson",
        filename=f"{project.slug}-preferences.jsonl",
    )
