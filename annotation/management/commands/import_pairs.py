"""`manage.py import_pairs SLUG FILE.jsonl [--format pairs|trl|hh-rlhf]`: import a JSON Lines file of pairs
(or of TRL or HH-RLHF preference rows), all or nothing."""

from __future__ import annotations

from typing import Any

from annotation import services
from annotation.management.jsonl_import import JSONLinesImportCommand
from annotation.models import Project
from rm_training import conversation


class Command(JSONLinesImportCommand):
    help = (
        "Import pairs from a JSON Lines file (one pair per line; '-' reads standard input). "
        "All or nothing: any invalid line stores nothing, and every bad line is listed."
    )
    what = "pairs"
    format: conversation.Format = "pairs"

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--format",
            choices=conversation.FORMATS,
            default="pairs",
            help="pairs: Pairwise's pair objects; trl: TRL preference rows (prompt, chosen, rejected; or "
            "chosen and rejected as whole conversations); hh-rlhf: HH-RLHF transcripts. See docs/API.md.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.format = options.pop("format")
        super().handle(*args, **options)

    def import_items(self, project: Project, items: list[Any]) -> str:
        result = services.pairs_import(project=project, items=items, format=self.format)
        return f"{result.created} pairs created, {result.unchanged} unchanged"
