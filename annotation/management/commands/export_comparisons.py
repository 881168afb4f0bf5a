"""`manage.py export_comparisons SLUG --kind judgments|preferences [--format jsonl|csv] -o FILE`: the
same rows as the export endpoints (annotation.selectors.exports), written to a file with a progress bar."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from django.core.management.base import BaseCommand, CommandError
from django.http import QueryDict
from tqdm import tqdm

from annotation import selectors
from annotation.api.serializers import ExportQuerySerializer
from annotation.models import Project

T = TypeVar("T")


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
        parser.add_argument(
            "--since", help="Judgments made at or after this time (ISO 8601 with a time zone)."
        )
        parser.add_argument("--until", help="Judgments made before this time (ISO 8601 with a time zone).")
        parser.add_argument("--min-votes", help="Only pairs with at least this many judgments.")
        parser.add_argument(
            "--raw-csv",
            action="store_true",
            help="CSV cells as they are; without it a cell starting with =, +, -, @, tab or carriage return "
            "gets a leading ' so that a spreadsheet does not run it as a formula.",
        )
        parser.add_argument("-o", "--output", required=True, help="The file to write ('-': standard output).")

    def handle(self, *args: Any, slug: str, kind: str, format: str, output: str, **options: Any) -> None:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}.")
        if format == "csv" and kind != "judgments":
            raise CommandError(
                "--format csv is for --kind judgments; preferences are JSON Lines (TRL reads them)."
            )
        # The endpoints' own checks of the filters, so that the command refuses what they refuse.
        given = QueryDict(mutable=True)  # text, as a query string is
        given.update(
            {name: options[name] for name in ("since", "until", "min_votes") if options[name] is not None}
        )
        query = ExportQuerySerializer(data=given)
        if not query.is_valid():
            problems = [
                f"--{field.replace('_', '-')}: {' '.join(map(str, errors))}"
                for field, errors in query.errors.items()
            ]
            raise CommandError("; ".join(problems))
        filters = selectors.ExportFilter(**query.validated_data)
        # The same selectors as the endpoints, so the file equals what they stream.
        total = None  # preferences: pairs left out by the majority rule are only known while reading
        if kind == "judgments":
            total = selectors.judgments_for_export(project=project, filters=filters).count()
        counter = _Counter()
        with tqdm(total=total, unit="rows", desc=kind, file=sys.stderr, disable=None) as bar:
            if kind == "judgments" and format == "jsonl":
                lines = selectors.judgment_lines(project=project, filters=filters)
                chunks = counter.count(lines, bar, lambda chunk: chunk.count(b"\n"))  # a row per line
            elif kind == "judgments":
                rows = selectors.judgment_rows(project=project, filters=filters)
                chunks = selectors.as_csv(
                    counter.count(rows, bar), selectors.JUDGMENT_COLUMNS, raw=options["raw_csv"]
                )
            else:
                rows = selectors.preference_rows(
                    project=project, filters=filters, conversational=options["conversational"]
                )
                chunks = selectors.as_jsonl(counter.count(rows, bar))
            written = self._write(chunks, output)
        if output != "-":
            self.stdout.write(f"{slug}: {counter.rows} {kind} rows written to {output} ({written} bytes).")

    def _write(self, chunks: Any, output: str) -> int:
        """A regular file is written beside the target and renamed at the end, so a failure leaves no half
        file. Anything else that exists (a symlink, a pipe, a device) is written into, never replaced."""
        if output == "-":
            return _to_stdout(chunks)
        target = Path(output)
        if target.is_dir():
            raise CommandError(f"{output} is a folder; name a file.")
        if not target.parent.is_dir():
            raise CommandError(f"No folder {target.parent} to write {target.name} in.")
        if target.is_symlink() or (target.exists() and not target.is_file()):
            with target.open("wb") as stream:
                return sum(stream.write(chunk) for chunk in chunks)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as stream:
                written = sum(stream.write(chunk) for chunk in chunks)
            os.chmod(temporary, 0o666 & ~_umask())  # as open() would make it, not mkstemp's 0600
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return written


def _to_stdout(chunks: Iterable[bytes]) -> int:
    written = 0
    try:
        for chunk in chunks:
            written += sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The reader stopped (`| head`): not an error. Python must not complain at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return written


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Counter:
    """Rows written, whether or not a progress bar shows them (tqdm counts nothing when switched off)."""

    def __init__(self) -> None:
        self.rows = 0

    def count(
        self, items: Iterable[T], bar: tqdm, rows_in: Callable[[T], int] = lambda item: 1
    ) -> Iterator[T]:
        for item in items:
            rows = rows_in(item)
            self.rows += rows
            bar.update(rows)
            yield item
