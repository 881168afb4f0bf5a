"""`manage.py export_comparisons SLUG --kind judgments|preferences [--format jsonl|csv] -o FILE`: the
same rows as the export endpoints (annotation.selectors.exports), written to a file with a progress bar."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from annotation import selectors
from annotation.models import Project

T = TypeVar("T")


def _time(value: str) -> Any:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 time with a time zone, such as 2026-11-30T09:15:00Z"
        )
    return parsed


class Command(BaseCommand):
    help = "Export a project's judgments (one row each) or preferences (one per pair with a strict majority)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug", help="The project's slug.")
        parser.add_argument("--kind", choices=["judgments", "preferences"], required=True)
        parser.add_argument(
            "--format", choices=["jsonl", "csv"], default="jsonl", help="csv: judgments only."
        )
        parser.add_argument(
            "--conversational", action="store_true", help="Preferences as chat messages (TRL's chat form)."
        )
        parser.add_argument("--since", type=_time, help="Judgments made at or after this time.")
        parser.add_argument("--until", type=_time, help="Judgments made before this time.")
        parser.add_argument("--min-votes", type=int, help="Only pairs with at least this many judgments.")
        parser.add_argument("-o", "--output", required=True, help="The file to write ('-': standard output).")

    def handle(self, *args: Any, slug: str, kind: str, format: str, output: str, **options: Any) -> None:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}.")
        if format == "csv" and kind != "judgments":
            raise CommandError(
                "--format csv is for --kind judgments; preferences are JSON Lines (TRL reads them)."
            )
        if options["min_votes"] is not None and options["min_votes"] < 1:
            raise CommandError("--min-votes must be at least 1.")
        filters = selectors.ExportFilter(
            since=options["since"], until=options["until"], min_votes=options["min_votes"]
        )
        # The same selectors as the endpoints, so the file equals what they stream.
        total = None  # preferences: pairs left out by the majority rule are only known while reading
        if kind == "judgments":
            total = selectors.judgments_for_export(project=project, filters=filters).count()
        with tqdm(total=total, unit="rows", desc=kind, file=sys.stderr, disable=None) as bar:
            if kind == "judgments" and format == "jsonl":
                lines = selectors.judgment_lines(project=project, filters=filters)
                chunks = _counted(lines, bar, lambda chunk: chunk.count(b"\n"))  # a row per line
            elif kind == "judgments":
                rows = selectors.judgment_rows(project=project, filters=filters)
                chunks = selectors.as_csv(_counted(rows, bar), selectors.JUDGMENT_COLUMNS)
            else:
                rows = selectors.preference_rows(
                    project=project, filters=filters, conversational=options["conversational"]
                )
                chunks = selectors.as_jsonl(_counted(rows, bar))
            written = self._write(chunks, output)
        if output != "-":
            self.stderr.write(f"{slug}: {bar.n} {kind} rows written to {output} ({written} bytes).")

    def _write(self, chunks: Any, output: str) -> int:
        """To a temporary file beside the target, renamed at the end: a failure leaves no half file."""
        if output == "-":
            written = 0
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
                written += len(chunk)
            sys.stdout.buffer.flush()
            return written
        target = Path(output)
        if target.is_dir():
            raise CommandError(f"{output} is a folder; name a file.")
        if not target.parent.is_dir():
            raise CommandError(f"No folder {target.parent} to write {target.name} in.")
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as stream:
                for chunk in chunks:
                    stream.write(chunk)
                written = stream.tell()
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return written


def _counted(items: Iterable[T], bar: tqdm, rows_in: Callable[[T], int] = lambda item: 1) -> Iterator[T]:
    for item in items:
        bar.update(rows_in(item))
        yield item
