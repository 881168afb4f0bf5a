"""The shape every JSON Lines import command shares: read the file with rm_training.jsonl (progress on a
terminal), list every bad line, call one service all or nothing, and name lines, not indexes, in errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from annotation.api.parsers import LinedItems
from annotation.models import Project
from rm_training import jsonl
from web.errors import ServiceError, add_lines

# Errors listed in full up to this many; a file with thousands of bad lines needs no more to be fixed.
ERRORS_SHOWN = 50
_BLOCK = 1 << 16


def _refuse_a_json_list(stream: BinaryIO, file: str) -> None:
    """A JSON list read line by line would be one error per line: say what the file is instead."""
    if stream.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        raise CommandError(
            f"{file} is one JSON document (it starts with '['); this command reads JSON Lines, one item "
            f"per line. jq -c '.[]' {file} turns a list into JSON Lines; the API and the admin's Files page "
            "take the list as it is. Nothing was imported."
        )
    stream.seek(0)


class JSONLinesImportCommand(BaseCommand):
    """Subclasses name what they import and the service that stores it."""

    what = "items"  # plural, for messages

    def import_items(self, project: Project, items: list[Any]) -> str:
        """Store the items (all or nothing) and return the summary line; raise ServiceError otherwise."""
        raise NotImplementedError

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug", help="The project's slug.")
        parser.add_argument("file", help=f"A .jsonl file of {self.what}, or '-' for standard input.")

    def handle(self, *args: Any, slug: str, file: str, **options: Any) -> None:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}.")
        try:
            if file == "-":
                items, broken = self._read(sys.stdin.buffer, size=None)
            else:
                with open(file, "rb") as stream:
                    _refuse_a_json_list(stream, file)
                    items, broken = self._read(stream, size=os.fstat(stream.fileno()).st_size)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.") from None
        if broken:
            # The readable lines are checked too, by the same service in a transaction rolled back
            # whatever it finds, so that one run lists the field errors beside the lines that are not JSON.
            problems = list(broken)
            with transaction.atomic():
                try:
                    self.import_items(project, items)
                except ServiceError as exc:
                    problems += self._problems(exc, items)
                transaction.set_rollback(True)
            problems.sort(key=lambda problem: problem[0])
            lines = "1 line" if len(broken) == 1 else f"{len(broken)} lines"
            verb = "is" if len(broken) == 1 else "are"
            more = len(problems) - len(broken)
            others = f", and {more} errors in the others" if more else ""
            self._fail(
                f"{lines} of {file} {verb} not JSON that Pairwise can store{others}; nothing was imported.",
                [text for _, text in problems],
            )
        try:
            summary = self.import_items(project, items)
        except ServiceError as exc:
            self._fail(exc.detail, [text for _, text in self._problems(exc, items)])
        self.stdout.write(f"{project.slug}: {summary} (from {len(items)} lines).")

    @staticmethod
    def _problems(exc: ServiceError, items: LinedItems) -> list[tuple[int, str]]:
        """(line number, text) of each error of a service's refusal; 0 for one that names no item."""
        add_lines(exc, items)
        return [
            (e["line"], f"line {e['line']}: {e.get('field') or 'item'}: {e['message']}")
            if e.get("line") is not None
            else (0, e["message"])
            for e in exc.extra.get("errors", [])
        ]

    def _read(self, stream: BinaryIO, *, size: int | None) -> tuple[LinedItems, list[tuple[int, str]]]:
        """The items with the line of each, and what is wrong with the lines that cannot be read."""
        items = LinedItems()
        items.lines = []
        broken: list[tuple[int, str]] = []
        # A progress bar on a terminal (tqdm turns itself off elsewhere), by bytes read.
        with tqdm(
            total=size, unit="B", unit_scale=True, desc="reading", file=sys.stderr, disable=None
        ) as bar:
            for line in jsonl.read_lines(_blocks(stream, bar.update)):
                if line.error is not None:
                    where = f"{line.field}: " if line.field else ""
                    broken.append((line.number, f"line {line.number}: {where}{line.error}"))
                    continue
                items.append(line.value)
                items.lines.append(line.number)
        return items, broken

    def _fail(self, summary: str, problems: list[str]) -> None:
        for problem in problems[:ERRORS_SHOWN]:
            self.stderr.write(f"  {problem}")
        if len(problems) > ERRORS_SHOWN:
            self.stderr.write(f"  ... and {len(problems) - ERRORS_SHOWN} more.")
        raise CommandError(summary)


def _blocks(stream: BinaryIO, progress: Callable[[int], Any]) -> Iterator[bytes]:
    while block := stream.read(_BLOCK):
        progress(len(block))
        yield block
