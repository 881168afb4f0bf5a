"""`manage.py import_pairs SLUG FILE.jsonl`: import a JSON Lines file of pairs, all or nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotation import services
from annotation.errors import ServiceError
from annotation.models import Project
from rm_training import jsonl

# Errors listed in full up to this many; a file with thousands of bad lines needs no more to be fixed.
_ERRORS_SHOWN = 50


def _read_items(chunks: Iterable[bytes]) -> tuple[list[Any], list[int], list[str]]:
    """The items, the line number of each, and what is wrong with the lines that cannot be read."""
    items: list[Any] = []
    line_numbers: list[int] = []
    broken: list[str] = []
    for line in jsonl.read_lines(chunks):
        if line.error is not None:
            where = f"{line.field}: " if line.field else ""
            broken.append(f"line {line.number}: {where}{line.error}")
            continue
        items.append(line.value)
        line_numbers.append(line.number)
    return items, line_numbers, broken


class Command(BaseCommand):
    help = (
        "Import pairs from a JSON Lines file (one pair per line; '-' reads standard input). "
        "All or nothing: any invalid line stores nothing, and every bad line is listed."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug", help="The project's slug.")
        parser.add_argument("file", help="A .jsonl file of pairs, or '-' for standard input.")

    def handle(self, *args: Any, slug: str, file: str, **options: Any) -> None:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}.")
        try:
            if file == "-":
                items, line_numbers, broken = _read_items(iter(lambda: sys.stdin.buffer.read(1 << 16), b""))
            else:
                with open(file, "rb") as stream:
                    items, line_numbers, broken = _read_items(iter(lambda: stream.read(1 << 16), b""))
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.") from None
        if broken:
            lines = "1 line" if len(broken) == 1 else f"{len(broken)} lines"
            verb = "is" if len(broken) == 1 else "are"
            self._fail(
                f"{lines} of {file} {verb} not JSON that Pairwise can store; nothing was imported.", broken
            )
        try:
            result = services.pairs_import(project=project, items=items)
        except ServiceError as exc:
            problems = [
                f"line {line_numbers[e['index']]}: {e.get('field') or 'item'}: {e['message']}"
                for e in exc.extra.get("errors", [])
            ]
            self._fail(f"{exc.detail} Nothing was imported.", problems)
        self.stdout.write(
            f"{project.slug}: {result.created} pairs created, {result.unchanged} unchanged "
            f"(from {len(items)} lines)."
        )

    def _fail(self, summary: str, problems: list[str]) -> None:
        for problem in problems[:_ERRORS_SHOWN]:
            self.stderr.write(f"  {problem}")
        if len(problems) > _ERRORS_SHOWN:
            self.stderr.write(f"  ... and {len(problems) - _ERRORS_SHOWN} more.")
        raise CommandError(summary)
