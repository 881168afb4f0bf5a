"""`manage.py import_pairs SLUG FILE.jsonl`: import a JSON Lines file of pairs, all or nothing."""

from __future__ import annotations

from typing import Any

from annotation import services
from annotation.management.jsonl_import import JSONLinesImportCommand
from annotation.models import Project


class Command(JSONLinesImportCommand):
    help = (
        "Import pairs from a JSON Lines file (one pair per line; '-' reads standard input). "
        "All or nothing: any invalid line stores nothing, and every bad line is listed."
    )
    what = "pairs"

    def import_items(self, project: Project, items: list[Any]) -> str:
        result = services.pairs_import(project=project, items=items)
        return f"{result.created} pairs created, {result.unchanged} unchanged"
