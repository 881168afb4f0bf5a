"""`manage.py import_judgments SLUG FILE.jsonl`: judgments made elsewhere, all or nothing (docs/API.md)."""

from __future__ import annotations

from typing import Any

from annotation import services
from annotation.management.jsonl_import import JSONLinesImportCommand
from annotation.models import Project


class Command(JSONLinesImportCommand):
    help = (
        "Import judgments made elsewhere from a JSON Lines file (one judgment per line: pair, rater, "
        "choice, and optionally strength, rationale, shown_left, created_at; '-' reads standard input). "
        "All or nothing: any invalid line stores nothing, and every bad line is listed."
    )
    what = "judgments"

    def import_items(self, project: Project, items: list[Any]) -> str:
        result = services.judgments_import(project=project, items=items)
        return f"{result.created} judgments created, {result.raters_created} new imported raters"
