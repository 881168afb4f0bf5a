"""The agreement report of a project: the rows the statistics need, read as integer arrays in three
statements, the figures of annotation.agreement, and a cache per project.

The rows: on PostgreSQL each statement is a binary COPY of bigint columns, which numpy reads as it
arrives (no Python object per value); elsewhere (SQLite) a plain cursor. The report is cached under one
key per project and filters, with the fingerprint it was computed at (the project's data version and pair
counts from its counters, the settings that change the figures), so a new judgment or pair makes the next
view recompute and every other view reads the cache. While the cache is unreachable,
every view computes the report (web.cache).
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar, cast

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from annotation.models import Judgment, Pair, Project, Rater
from rm_training.jsonl import finite_or_none
from web.cache import cache_get, cache_set

from .exports import ExportFilter

T = TypeVar("T")

CACHE_VERSION = 2
CACHE_SECONDS = 7 * 24 * 3600  # one key per project and filters, overwritten when the fingerprint changes
WINDOW_CACHE_SECONDS = 10 * 60  # reports for a since / until window
BOOTSTRAP_REPLICATES = 2000
BOOTSTRAP_SEED = 0
INTERVAL_LEVEL = 0.95

_CHOICE_CODE = "CASE {0} WHEN 'a' THEN 0 WHEN 'b' THEN 1 WHEN 'tie' THEN 2 ELSE -1 END"
_SIDE_CODE = "CASE {0} WHEN 'a' THEN 0 WHEN 'b' THEN 1 ELSE -1 END"
# Days since 1970-01-01 in UTC (PostgreSQL stores timestamptz; SQLite text in UTC).
_DAY = {
    "postgresql": "({0} AT TIME ZONE 'UTC')::date - date '1970-01-01'",
    "sqlite": "CAST(julianday({0}) - 2440587.5 AS INTEGER)",
}
_PG_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


@dataclass(frozen=True)
class RaterName:
    pseudonym: str  # what the API and the exports show
    label: str  # what the admin dashboard shows staff: the username, or the source id of an imported rater


@dataclass(frozen=True)
class AgreementReport:
    """A project's agreement figures (annotation.agreement.AgreementFigures) with its raters and progress."""

    project: str
    figures: Any  # AgreementFigures; Any so that importing this module does not import numpy
    raters: tuple[RaterName, ...]  # by the figures' dense rater index
    pairs_total: int  # regular (not gold) pairs of the project
    pairs_complete: int  # of which judged judgments_per_pair times or more
    gold_pairs: int
    judgments_per_pair: int
    very_fast_ms: int
    strength_levels: int
    filters: dict[str, Any]
    computed_at: datetime

    def rater_rows(self) -> list[dict[str, Any]]:
        """The per-rater figures with their names, most judgments first."""
        rows = []
        for r in self.figures.per_rater:
            name = self.raters[r.rater]
            rows.append({"pseudonym": name.pseudonym, "label": name.label, "figures": r})
        return sorted(rows, key=lambda row: (-row["figures"].judgments, row["pseudonym"]))

    def as_dict(self) -> dict[str, Any]:
        """The API's body: JSON-able, undefined figures as null."""
        from annotation.agreement.statistics import CEILING_ASSUMPTION

        f = self.figures
        body: dict[str, Any] = {
            "pairs": f.pairs,
            "judgments": f.judgments,
            "raters": f.raters,
            "judgments_total": f.judgments_total,
            "percent_agreement": f.percent_agreement,
            "percent_agreement_interval": f.percent_agreement_interval,
            "cohen_kappa": f.cohen_kappa,
            "cohen_kappa_rater_pairs": f.cohen_kappa_rater_pairs,
            "cohen_kappa_defined_pairs": f.cohen_kappa_defined_pairs,
            "fleiss_kappa": f.fleiss_kappa,
            "krippendorff_alpha": f.krippendorff_alpha,
            "krippendorff_alpha_interval": f.krippendorff_alpha_interval,
        }
        if self.strength_levels > 0:
            body["krippendorff_alpha_ordinal"] = f.krippendorff_alpha_ordinal
            body["krippendorff_alpha_ordinal_judgments"] = f.krippendorff_alpha_ordinal_judgments
        body |= {
            "decisive_agreement": f.decisive_agreement,
            "decisive_agreement_interval": f.decisive_agreement_interval,
            "ceiling_accuracy": f.ceiling_accuracy,
            "ceiling_accuracy_interval": f.ceiling_accuracy_interval,
            "ceiling_accuracy_note": CEILING_ASSUMPTION,
            "interval": {
                "level": INTERVAL_LEVEL,
                "bootstrap_replicates": BOOTSTRAP_REPLICATES,
                "seed": BOOTSTRAP_SEED,
            },
            "left_rate": f.left_rate,
            "left_judgments": f.left_judgments,
            "left_p_value": f.left_p_value,
            "longer_rate": f.longer_rate,
            "longer_judgments": f.longer_judgments,
            "judgments_per_day": [
                {"date": (date(1970, 1, 1) + timedelta(days=day)).isoformat(), "judgments": n}
                for day, n in f.judgments_per_day
            ],
            "progress": {
                "pairs": self.pairs_total,
                "complete": self.pairs_complete,
                "gold_pairs": self.gold_pairs,
                "judgments_per_pair": self.judgments_per_pair,
            },
            "very_fast_ms": self.very_fast_ms,
            "filters": self.filters,
            "computed_at": self.computed_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
        body["per_rater"] = [
            {
                "rater": row["pseudonym"],
                "judgments": r.judgments,
                "agreement": r.agreement,
                "agreement_pairs": r.agreement_pairs,
                "majority_agreement": r.majority_agreement,
                "majority_judgments": r.majority_judgments,
                "left_rate": r.left_rate,
                "left_judgments": r.left_judgments,
                "left_p_value": r.left_p_value,
                "longer_rate": r.longer_rate,
                "longer_judgments": r.longer_judgments,
                "median_time_ms": r.median_time_ms,
                "very_fast_share": r.very_fast_share,
                "timed_judgments": r.timed_judgments,
                "gold_accuracy": r.gold_accuracy,
                "gold_judgments": r.gold_judgments,
                "flags": [{"code": code, "reason": reason} for code, reason in r.flags],
            }
            for row in self.rater_rows()
            for r in [row["figures"]]
        ]
        return finite_or_none(body)


def _filters_dict(filters: ExportFilter) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    return {"since": iso(filters.since), "until": iso(filters.until), "min_votes": filters.min_votes}


def cache_key(project: Project, filters: ExportFilter) -> str:
    """The report's key: one per project and filters, overwritten when the fingerprint changes (Redis is
    also the broker and evicts nothing, so stale reports must not pile up under keys of their own)."""
    window = hashlib.sha256(repr(sorted(_filters_dict(filters).items())).encode()).hexdigest()[:16]
    return f"agreement:v{CACHE_VERSION}:{project.pk}:{window}"


@dataclass(frozen=True)
class PairCounts:
    """A project's pairs as its counters hold them (annotation.services.engine.counters)."""

    regular: int
    open: int  # regular pairs with fewer than judgments_per_pair judgments
    gold: int


def fingerprint(project: Project) -> tuple[Any, ...]:
    """What the report depends on, in one statement of a few rows whatever the project's size: the
    project's data version (its counters' versions, bumped by every write the report reads: judgments,
    imports, gold answers, corrections), its pair counts, and the settings that change the figures."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(sum(version), 0), COALESCE(sum(regular_pairs), 0), COALESCE(sum(open_pairs), 0),"
            " COALESCE(sum(gold_pairs), 0) FROM annotation_projectcounter WHERE project_id = %s",
            [project.pk],
        )
        version, regular, open_pairs, gold = (int(value) for value in cursor.fetchone())
    return (
        version,
        PairCounts(regular=regular, open=open_pairs, gold=gold),
        project.strength_levels,
        project.very_fast_ms,
        project.judgments_per_pair,
    )


def pair_counts(project: Project) -> PairCounts:
    return cast(PairCounts, fingerprint(project)[1])


def project_agreement(project: Project, *, filters: ExportFilter | None = None) -> AgreementReport:
    """The project's agreement report, from the cache while no judgment or pair changed (one query),
    otherwise computed (three more) and cached. ``filters``: the export's, so a dataset snapshot's human
    agreement is computed on exactly the judgments it exported."""
    filters = filters or ExportFilter()
    # A since / until window is usually asked once (a snapshot, an ad-hoc look): a short life.
    windowed = filters.since is not None or filters.until is not None
    return cached_on_fingerprint(
        cache_key(project, filters),
        project,
        lambda state: compute_agreement(project, filters=filters, counts=state[1]),
        WINDOW_CACHE_SECONDS if windowed else CACHE_SECONDS,
    )


def cached_on_fingerprint(
    key: str, project: Project, compute: Callable[[tuple[Any, ...]], T], seconds: int
) -> T:
    """compute(the project's fingerprint), from the cache while the fingerprint is the one stored with it
    (one query), else computed and stored with it for ``seconds``: the agreement report's, the arms' and
    the leaderboard's cache."""
    state = fingerprint(project)
    cached = cache_get(key)
    if isinstance(cached, tuple) and len(cached) == 2 and cached[0] == state:
        return cast(T, cached[1])
    value = compute(state)
    cache_set(key, (state, value), seconds)
    return value


@dataclass(frozen=True)
class AgreementRows:
    """What the figures are computed from: three statements' worth of rows."""

    judgments: Any  # int64 array (judgments, 8): see read_judgment_columns
    gold: Any  # int64 array (gold pairs, 2): see read_gold_columns
    raters: dict[int, RaterName]  # by rater id
    counts: PairCounts


def read_rows(project: Project, filters: ExportFilter, *, counts: PairCounts | None = None) -> AgreementRows:
    """The rows the figures need, in three statements (judgments, gold pairs, the raters' names), and
    the pair counts (the fingerprint's, or one more statement)."""
    from annotation.agreement.statistics import dense_index

    judgments = read_judgment_columns(project, filters)
    rater_ids = dense_index(judgments[:, 1])[0].tolist()
    return AgreementRows(
        judgments=judgments,
        gold=read_gold_columns(project),
        raters=_rater_names(project, rater_ids),
        counts=counts or pair_counts(project),
    )


def compute_agreement(
    project: Project, *, filters: ExportFilter, counts: PairCounts | None = None
) -> AgreementReport:
    """Read the rows and compute every figure; no cache."""
    return report_from_rows(project, filters=filters, rows=read_rows(project, filters, counts=counts))


def report_from_rows(project: Project, *, filters: ExportFilter, rows: AgreementRows) -> AgreementReport:
    """Every figure of the report from the rows (no database)."""
    import numpy as np

    from annotation.agreement.report import JudgmentArrays, agreement_figures
    from annotation.agreement.statistics import dense_index

    j_pair, j_rater, choice, strength, shown_left, time_ms, day, j_longer = rows.judgments.T
    pair_ids, pair_index = dense_index(j_pair)
    longer = np.empty(len(pair_ids), dtype=np.int64)
    longer[pair_index] = j_longer
    gold = np.full(len(pair_ids), -1, dtype=np.int64)
    gold_at = np.searchsorted(pair_ids, rows.gold[:, 0])
    judged = gold_at < len(pair_ids)
    judged[judged] = pair_ids[gold_at[judged]] == rows.gold[judged, 0]
    gold[gold_at[judged]] = rows.gold[judged, 1]
    rater_ids, rater_index = dense_index(j_rater)
    data = JudgmentArrays(
        pair=pair_index,
        rater=rater_index.reshape(-1),
        choice=choice,
        strength=strength,
        shown_left=shown_left,
        time_ms=time_ms,
        day=day,
        pair_longer=longer,
        pair_gold=gold,
        n_raters=len(rater_ids),
    )
    if filters.min_votes:
        votes = np.bincount(pair_index, minlength=len(pair_ids))
        data = data.keep(votes[pair_index] >= filters.min_votes)
    figures = agreement_figures(
        data,
        strength_levels=project.strength_levels,
        very_fast_ms=project.very_fast_ms,
        n_boot=BOOTSTRAP_REPLICATES,
        seed=BOOTSTRAP_SEED,
    )
    counts = rows.counts
    return AgreementReport(
        project=project.slug,
        figures=figures,
        raters=tuple(rows.raters[int(r)] for r in rater_ids),
        pairs_total=counts.regular,
        pairs_complete=counts.regular - counts.open,
        gold_pairs=counts.gold,
        judgments_per_pair=project.judgments_per_pair,
        very_fast_ms=project.very_fast_ms,
        strength_levels=project.strength_levels,
        filters=_filters_dict(filters),
        computed_at=timezone.now(),
    )


def read_judgment_columns(project: Project, filters: ExportFilter, *, where: Q | None = None) -> Any:
    """One row per judgment in the window (and meeting ``where``, a condition on judgments): pair id,
    rater id, choice code, strength (0: none), side shown left (-1: unknown), time on task (-1: unknown),
    day since 1970-01-01, the pair's longer response (Judgment.pair_longer: 0 a, 1 b, -1 as long)."""
    rows = Judgment.objects.filter(project=project).filter(filters.window(), where or Q()).order_by()
    queryset = rows.values_list(
        "pair_id",
        "rater_id",
        "choice",
        "strength",
        "shown_left",
        "time_on_task_ms",
        "created_at",
        "pair_longer",
    )
    columns = [
        "t.pair_id",
        "t.rater_id",
        _CHOICE_CODE.format("t.choice"),
        "COALESCE(t.strength, 0)",
        _SIDE_CODE.format("t.shown_left"),
        "COALESCE(t.time_on_task_ms, -1)",
        _DAY[connection.vendor].format("t.created_at"),
        "t.pair_longer",
    ]
    return read_int_columns(queryset, columns)


def read_gold_columns(project: Project) -> Any:
    """One row per gold pair of the project (few; found by the pair_gold index): id, gold code."""
    queryset = (
        Pair.objects.filter(project=project, gold__isnull=False).order_by("id").values_list("id", "gold")
    )
    return read_int_columns(queryset, ["t.id", _CHOICE_CODE.format("t.gold")])


def read_int_columns(queryset: QuerySet[Any, Any], columns: list[str], *, copy: bool | None = None) -> Any:
    """The queryset's rows through ``columns`` (SQL over its columns as ``t``, never NULL) as an int64
    array of shape (rows, columns), in one statement: a binary COPY on PostgreSQL (``copy=False``: a
    plain cursor, as elsewhere)."""
    import numpy as np

    inner, params = queryset.query.sql_with_params()
    select = ", ".join(f"CAST({c} AS bigint)" for c in columns)
    sql = f"SELECT {select} FROM ({inner}) t"
    connection.ensure_connection()
    if copy is None:
        copy = connection.vendor == "postgresql"
    if not copy:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, len(columns))
    copy_sql = f"COPY ({sql}) TO STDOUT (FORMAT binary)"
    started = time.monotonic()
    buffer = bytearray()
    with connection.connection.cursor() as cursor, cursor.copy(copy_sql, params) as stream:
        for chunk in stream:
            buffer += chunk
    if connection.queries_logged:
        # COPY goes past Django's cursor wrapper: log it as that wrapper would, so that query counts
        # (and the debug toolbar) see every statement.
        connection.queries_log.append({"sql": copy_sql, "time": f"{time.monotonic() - started:.3f}"})
    return _parse_binary_copy(buffer, len(columns))


def _parse_binary_copy(buffer: bytearray, n_columns: int) -> Any:
    """PostgreSQL's binary COPY of non-null bigint columns: a header, then per row a 16-bit field count
    and per field a 32-bit length (8) and the value, all big-endian, then a 16-bit -1."""
    import numpy as np

    if buffer[:11] != _PG_COPY_SIGNATURE:
        raise ValueError("not a binary COPY stream")
    (extension,) = struct.unpack(">I", buffer[15:19])
    start = 19 + extension
    body = memoryview(buffer)[start : len(buffer) - 2]
    row = np.dtype([("fields", ">i2")] + [(f, t) for i in range(n_columns) for f, t in _field(i)])
    problem = ValueError("unexpected row layout in the binary COPY stream (a NULL?)")
    if len(body) % row.itemsize:
        raise problem
    rows = np.frombuffer(body, dtype=row)
    if (rows["fields"] != n_columns).any() or any((rows[f"length{i}"] != 8).any() for i in range(n_columns)):
        raise problem
    return np.stack([rows[f"value{i}"].astype(np.int64) for i in range(n_columns)], axis=1)


def _field(i: int) -> list[tuple[str, str]]:
    return [(f"length{i}", ">i4"), (f"value{i}", ">i8")]


def _rater_names(project: Project, rater_ids: list[int]) -> dict[int, RaterName]:
    """Names of the raters by id: one statement, whatever the number (the project's imported raters are
    in the condition so that an empty list still makes one query)."""
    rows = Rater.objects.filter(Q(pk__in=rater_ids) | Q(imported_into=project)).values_list(
        "pk", "pseudonym", "user__username", "source_id"
    )
    return {
        pk: RaterName(pseudonym, username if username is not None else f"{source_id} (imported)")
        for pk, pseudonym, username, source_id in rows
    }
