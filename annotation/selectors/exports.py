"""Comparison data out of Pairwise: one row per judgment, or one preference per pair. Rows are read from a
server-side cursor in chunks, so memory stays flat whatever the size; the endpoints, the
export_comparisons command and the periodic snapshots all read them here.

Raters appear by pseudonym only. Which pairs make a preference is rm_training.votes' rule, the one the
trainer applies to the judgments file, so both files train the same pairs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Avg, Count, F, Max, OuterRef, Q, QuerySet, Subquery

from annotation.models import Choice, Judgment, Pair, Project
from rm_training.conversation import as_messages
from rm_training.votes import Votes, preference_row

JUDGMENT_COLUMNS = (
    "judgment_id",
    "pair_id",
    "external_id",
    "prompt",
    "messages",
    "response_a",
    "response_b",
    "model_a",
    "model_b",
    "rater",
    "choice",
    "strength",
    "shown_left",
    "rationale",
    "time_on_task_ms",
    "created_at",
    # true when a reviewer left the pair out of training: its rows stay here, and the trainer and the
    # preferences export leave the pair out.
    "left_out",
    # Under active selection, the rule that chose the pair for this judgment ("uncertainty" or "random")
    # and the probability that it was the pair chosen (Assignment.arm, .propensity); both null under the
    # default order and for imported judgments. The trainer's --ipw and its held-out figures read them.
    "arm",
    "propensity",
)
PREFERENCE_COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "pair_id",
    "external_id",
    "votes",
    "agreement",
    "strength",
)

# Rows fetched from the database at a time: large enough to amortise the round trip, small enough
# that a chunk of long texts stays a few megabytes.
CHUNK_ROWS = 2000
# Judgments per keyset chunk of the JSON Lines export (one COPY each, streamed: memory holds a block, not
# a chunk): the first FIRST_CHUNK_ROWS, each next chunk twice the one before, up to COPY_CHUNK_ROWS. A
# small LIMIT makes the planner walk the (project, id) index with a nested loop to each judgment's pair,
# so the first line comes at once; with a LIMIT near the project's size it would join whole tables and
# sort (at 100,000 pairs, 0.3 s before the first byte). judgment_rows' chunks are CHUNK_ROWS, which it
# holds in memory.
FIRST_CHUNK_ROWS = 500
COPY_CHUNK_ROWS = 16_000


@dataclass(frozen=True)
class ExportFilter:
    """Judgments made in [since, until), on pairs with at least min_votes judgments in that window."""

    since: datetime | None = None
    until: datetime | None = None
    min_votes: int | None = None

    def window(self, prefix: str = "") -> Q:
        """The time window as a condition on judgments (``prefix`` "judgments__" from a pair)."""
        condition = Q()
        if self.since is not None:
            condition &= Q(**{f"{prefix}created_at__gte": self.since})
        if self.until is not None:
            condition &= Q(**{f"{prefix}created_at__lt": self.until})
        return condition


def judgments_for_export(
    *, project: Project, filters: ExportFilter, up_to: int | None = None
) -> QuerySet[Judgment, Any]:
    """The judgment rows as dicts, in id order (one query); the pseudonym is under "rater_pseudonym".
    ``up_to``: judgments up to this id only (an export in chunks: what it found at its start)."""
    rows = Judgment.objects.filter(project=project).filter(filters.window())
    bound = Q() if up_to is None else Q(id__lte=up_to)
    rows = rows.filter(bound)
    if filters.min_votes:
        in_window = Judgment.objects.filter(filters.window(), bound, pair=OuterRef("pair")).order_by()
        votes = in_window.values("pair").annotate(n=Count("pk")).values("n")
        rows = rows.alias(pair_votes=Subquery(votes)).filter(pair_votes__gte=filters.min_votes)
    # "id" as well as judgment_id: the cursor paginator of the list endpoint reads it.
    return rows.order_by("id").values(
        "id",
        "pair_id",
        "choice",
        "strength",
        "shown_left",
        "rationale",
        "time_on_task_ms",
        "created_at",
        judgment_id=F("id"),
        external_id=F("pair__external_id"),
        prompt=F("pair__prompt"),
        messages=F("pair__messages"),
        response_a=F("pair__response_a"),
        response_b=F("pair__response_b"),
        model_a=F("pair__model_a"),
        model_b=F("pair__model_b"),
        rater_pseudonym=F("rater__pseudonym"),  # "rater" itself is the foreign key's name
        left_out=F("pair__left_out"),
        # A LEFT JOIN in the same query (the assignment is nullable): no query more per chunk.
        arm=F("assignment__arm"),
        propensity=F("assignment__propensity"),
    )


def _export_rows(*, project: Project, filters: ExportFilter) -> QuerySet[Judgment, Any] | None:
    """judgments_for_export up to the last id there is now (None: no judgment), so that judgments made
    while an export runs do not join it half-way. The exports read it in keyset chunks (id > the last
    id of the chunk before, LIMIT): each chunk walks the (project, id) index and stops after its rows, so
    the first byte does not wait for a sort of every judgment with its pair (bench/scale)."""
    up_to = Judgment.objects.filter(project=project).aggregate(last=Max("id"))["last"]
    if up_to is None:
        return None
    return judgments_for_export(project=project, filters=filters, up_to=up_to)


def judgment_lines(*, project: Project, filters: ExportFilter) -> Iterator[bytes]:
    """judgments.jsonl in blocks of about a megabyte. On PostgreSQL the database writes each line
    (row_to_json) and streams them with COPY, so Python encodes no row: the export runs at over half of
    COPY's own rate, where encoding rows in Python managed about a quarter (bench/export). Elsewhere
    (SQLite) the same bytes come from :func:`as_jsonl`."""
    if connection.vendor != "postgresql":
        yield from as_jsonl(judgment_rows(project=project, filters=filters))
        return
    special = {
        "rater": 't."rater_pseudonym" AS "rater"',
        "created_at": f"to_char(t.\"created_at\" AT TIME ZONE 'UTC', '{_SQL_TIME_FORMAT}') AS \"created_at\"",
    }
    columns = ", ".join(special.get(column, f't."{column}"') for column in JUDGMENT_COLUMNS)
    rows = _export_rows(project=project, filters=filters)
    if rows is None:
        return
    connection.ensure_connection()
    block = bytearray()
    last, size = 0, min(FIRST_CHUNK_ROWS, COPY_CHUNK_ROWS)
    while True:
        inner, params = rows.filter(id__gt=last)[:size].query.sql_with_params()
        # CSV with a delimiter and a quote that JSON text never holds raw (it escapes control characters):
        # every field goes out as it is, so each line is exactly the JSON. The subquery's ORDER BY id
        # holds: the outer query only projects its rows.
        sql = (
            f"COPY (SELECT row_to_json(r)::text FROM (SELECT {columns} FROM ({inner}) t) r) TO STDOUT "
            "WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
        )
        count, last_row = 0, b""
        with connection.connection.cursor() as cursor, cursor.copy(sql, params) as copy:
            for row in copy:
                block += row
                count += 1
                last_row = row
                if len(block) >= 1 << 20:
                    yield bytes(block)
                    block.clear()
        if block:  # a chunk's end: what it wrote goes out (the first chunk's rows at once)
            yield bytes(block)
            block.clear()
        if count < size:
            break
        last, size = _line_id(bytes(last_row)), min(2 * size, COPY_CHUNK_ROWS)


def _line_id(line: bytes) -> int:
    """The judgment id of a line of judgment_lines: its first field (JUDGMENT_COLUMNS)."""
    start = len(b'{"judgment_id":')
    return int(line[start : line.index(b",", start)])


def judgment_rows(*, project: Project, filters: ExportFilter) -> Iterator[dict[str, Any]]:
    """Every judgment row in id order, columns in JUDGMENT_COLUMNS order, read in keyset chunks."""
    rows = _export_rows(project=project, filters=filters)
    if rows is None:
        return
    last = 0
    while True:
        chunk = list(rows.filter(id__gt=last)[:CHUNK_ROWS])
        for row in chunk:
            row["rater"] = row["rater_pseudonym"]
            yield {column: row[column] for column in JUDGMENT_COLUMNS}
        if len(chunk) < CHUNK_ROWS:
            break
        last = chunk[-1]["id"]


def preference_rows(
    *, project: Project, filters: ExportFilter, conversational: bool = False
) -> Iterator[dict[str, Any]]:
    """One row per pair whose votes (in the window) have a strict majority for a or b, in pair order; pairs
    a reviewer left out of training are not among them.

    ``strength`` is the mean strength of the chosen side's judgments, when the project records strength
    (not named "margin": TRL would read that column as a logit margin, and fail on its nulls).
    ``conversational``: prompt as a list of chat messages (the pair's whole conversation; a plain prompt is
    one user message) and chosen/rejected as assistant messages, the form TRL reads for chat models. The
    standard form's prompt is text: a conversation's rendering (rm_training.conversation.render), which
    Pair.prompt holds.
    """
    window = filters.window("judgments__")
    counted = Pair.objects.filter(project=project, left_out=False).annotate(
        votes_a=Count("judgments", filter=window & Q(judgments__choice=Choice.A)),
        votes_b=Count("judgments", filter=window & Q(judgments__choice=Choice.B)),
        votes_tie=Count("judgments", filter=window & Q(judgments__choice=Choice.TIE)),
        strength_a=Avg("judgments__strength", filter=window & Q(judgments__choice=Choice.A)),
        strength_b=Avg("judgments__strength", filter=window & Q(judgments__choice=Choice.B)),
    )
    counted = counted.alias(votes=F("votes_a") + F("votes_b") + F("votes_tie")).filter(
        votes__gte=max(1, filters.min_votes or 1)
    )
    fields = ("id", "external_id", "prompt", "messages", "response_a", "response_b")
    tallies = ("votes_a", "votes_b", "votes_tie", "strength_a", "strength_b")
    for pair in counted.order_by("id").values(*fields, *tallies).iterator(chunk_size=CHUNK_ROWS):
        votes = Votes(a=pair["votes_a"], b=pair["votes_b"], tie=pair["votes_tie"])
        winner = votes.majority()
        row = preference_row(
            prompt=pair["prompt"],
            response_a=pair["response_a"],
            response_b=pair["response_b"],
            votes=votes,
            strength=pair[f"strength_{winner}"] if winner in ("a", "b") else None,
        )
        if row is None:
            continue
        row |= {"pair_id": pair["id"], "external_id": pair["external_id"]}
        if conversational:
            row |= {
                "prompt": as_messages(pair["messages"] or pair["prompt"]),
                "chosen": [{"role": "assistant", "content": row["chosen"]}],
                "rejected": [{"role": "assistant", "content": row["rejected"]}],
            }
        yield {column: row[column] for column in PREFERENCE_COLUMNS}


# Times in every export: ISO 8601 in UTC with all six decimals, the same from Python and from SQL.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_SQL_TIME_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return _iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def as_jsonl(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """JSON Lines, UTF-8, in blocks of CHUNK_ROWS lines (one write per block, not per row)."""
    block: list[str] = []
    for row in rows:
        # Compact separators: the same bytes as PostgreSQL's row_to_json.
        block.append(json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=_json_default))
        if len(block) == CHUNK_ROWS:
            yield ("\n".join(block) + "\n").encode()
            block.clear()
    if block:
        yield ("\n".join(block) + "\n").encode()


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection"): a rater's
# rationale or a model's response of "=HYPERLINK(...)" would run on the admin's machine.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any, *, raw: bool) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as in the JSON Lines file
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, list | dict):
        # A conversation's messages as JSON text: it starts with "[", which no spreadsheet runs.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and not raw and value.startswith(FORMULA_STARTS):
        return "'" + value  # OWASP's rule: shown as text, the quote hidden by the spreadsheet
    return value


def as_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], *, raw: bool = False) -> Iterator[bytes]:
    """CSV with a header row, UTF-8, quoted by Python's csv module (newlines, quotes and commas in text).
    A text cell that a spreadsheet would run as a formula gets a leading ' unless ``raw``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for count, row in enumerate(rows, start=1):
        writer.writerow([_csv_cell(row[column], raw=raw) for column in columns])
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
