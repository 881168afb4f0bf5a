"""The leaderboard of a project's models (annotation.leaderboard's figures): the battle rows it needs, read
in three statements whatever their number (the judgments as a binary COPY of integer columns, by the
agreement selector's reader; the model names; the pairs' ids and model numbers, another binary COPY) and,
for style control, a fourth (the pairs' response texts from a server-side cursor, whose style figures
annotation.leaderboard.response_style computes); and a cache per project, filters and options under the
agreement report's fingerprint, so that a new judgment or pair makes the next view recompute.

Battles are the judgments of regular pairs that name two different models (model_a, model_b). Gold pairs
are left out: every rater sees each of them, so they would weigh as many battles as there are raters.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

from django.db.models import Case, F, QuerySet, Value, When
from django.utils import timezone

from annotation.models import Judgment, Pair, Project, Rater
from rm_training.jsonl import finite_or_none
from web.errors import Invalid

from .agreement import (
    _CHOICE_CODE,
    CACHE_SECONDS,
    WINDOW_CACHE_SECONDS,
    _filters_dict,
    cached_on_fingerprint,
    project_agreement,
    read_int_columns,
)
from .exports import ExportFilter

CACHE_VERSION = 1
DEFAULT_ROUNDS = 1000
MAX_ROUNDS = 2000
PAIR_CHUNK = 2000


@dataclass(frozen=True)
class LeaderboardOptions:
    reference: str | None = None  # the model rated 1000; None: the mean of the models at 1000
    style: bool = True  # the style-controlled ratings too (reads the pairs' texts)
    exclude_flagged: bool = False  # leave out the raters the agreement report flags (same filters)
    seed: int = 0
    rounds: int = DEFAULT_ROUNDS  # bootstrap rounds, 0 .. MAX_ROUNDS


@dataclass(frozen=True)
class LeaderboardReport:
    project: str
    board: Any  # annotation.leaderboard.Leaderboard; Any so that importing this module imports no numpy
    judgments: int  # judgments read in the window, before the battles were picked out
    left_out_raters: tuple[str, ...]  # pseudonyms of the flagged raters left out
    filters: dict[str, Any]
    options: LeaderboardOptions
    computed_at: datetime

    def model_rows(self) -> list[dict[str, Any]]:
        """One row per model, best rating first: the CSV's columns."""
        b = self.board
        rows = []
        for i, model in enumerate(b.models):
            row: dict[str, Any] = {
                "model": model,
                "rating": float(b.ratings.rating[i]),
                "lower": float(b.ratings.lower[i]),
                "upper": float(b.ratings.upper[i]),
                "rank": int(b.ratings.rank[i]),
                "rank_worst": int(b.ratings.rank_worst[i]),
                "battles": int(b.battles[i]),
                "wins": int(b.wins[i]),
                "losses": int(b.losses[i]),
                "ties": int(b.ties[i]),
            }
            style = b.style
            row |= {
                "style_rating": float(style.rating[i]) if style else None,
                "style_lower": float(style.lower[i]) if style else None,
                "style_upper": float(style.upper[i]) if style else None,
                "style_rank": int(style.rank[i]) if style else None,
                "style_rank_worst": int(style.rank_worst[i]) if style else None,
            }
            rows.append(row)
        return sorted(rows, key=lambda row: (-row["rating"], row["model"]))

    def as_dict(self) -> dict[str, Any]:
        """The API's body: JSON-able, undefined figures as null."""
        from annotation.leaderboard import INITIAL_RATING, INTERVAL_LEVEL, RIDGE, SCALE, STYLE_FEATURES

        b = self.board
        order = [b.models.index(row["model"]) for row in self.model_rows()]

        def matrix(values: Any) -> list[list[float | None]]:
            return [[float(values[i, j]) for j in order] for i in order]

        body = {
            "models": [
                {
                    "model": row["model"],
                    "rating": row["rating"],
                    "interval": [row["lower"], row["upper"]],
                    "rank": row["rank"],
                    "rank_range": [row["rank"], row["rank_worst"]],
                    "battles": row["battles"],
                    "wins": row["wins"],
                    "losses": row["losses"],
                    "ties": row["ties"],
                    "style_controlled": None
                    if row["style_rating"] is None
                    else {
                        "rating": row["style_rating"],
                        "interval": [row["style_lower"], row["style_upper"]],
                        "rank": row["style_rank"],
                        "rank_range": [row["style_rank"], row["style_rank_worst"]],
                    },
                }
                for row in self.model_rows()
            ],
            "style_coefficients": None
            if b.style_coefficients is None
            else dict(zip(STYLE_FEATURES, map(float, b.style_coefficients), strict=True)),
            "order": [b.models[i] for i in order],
            "win_rate": matrix(b.win_rate),
            "predicted_win": matrix(b.predicted_win),
            "battles": b.n_battles,
            "judgments": self.judgments,
            "left_out_raters": list(self.left_out_raters),
            "scale": {
                "anchor": self.options.reference or "mean",
                "anchor_rating": INITIAL_RATING,
                "points_per_log_strength": SCALE,
                "ridge": RIDGE,
            },
            "interval": {
                "level": INTERVAL_LEVEL,
                "rounds": b.rounds,
                "seed": b.seed,
                "method": "bootstrap over judgments (multinomial counts of the battle categories)",
                "style_method": "normal approximation (sandwich covariance), drawn with the same seed",
            },
            "options": asdict(self.options),
            "filters": self.filters,
            "computed_at": self.computed_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
        return cast(dict[str, Any], finite_or_none(body))


def cache_key(project: Project, filters: ExportFilter, options: LeaderboardOptions) -> str:
    """One key per project, filters and options (each overwritten when the fingerprint changes)."""
    inputs = repr((sorted(_filters_dict(filters).items()), sorted(asdict(options).items())))
    return f"leaderboard:v{CACHE_VERSION}:{project.pk}:{hashlib.sha256(inputs.encode()).hexdigest()[:16]}"


def project_leaderboard(
    project: Project, *, filters: ExportFilter | None = None, options: LeaderboardOptions | None = None
) -> LeaderboardReport:
    """The project's leaderboard, from the cache while nothing changed (the agreement report's fingerprint:
    one query), otherwise computed and cached. Raises Invalid for a reference that is not a model."""
    filters = filters or ExportFilter()
    options = options or LeaderboardOptions()
    # Windows and other options than the page's are usually asked once: a short life.
    usual = filters == ExportFilter() and options in (LeaderboardOptions(), LeaderboardOptions(style=False))
    return cached_on_fingerprint(
        cache_key(project, filters, options),
        project,
        lambda _: compute_leaderboard(project, filters=filters, options=options),
        CACHE_SECONDS if usual else WINDOW_CACHE_SECONDS,
    )


def compute_leaderboard(
    project: Project, *, filters: ExportFilter, options: LeaderboardOptions
) -> LeaderboardReport:
    """Read the rows and compute the leaderboard; no cache."""
    from annotation.leaderboard import leaderboard

    rows, judgments = read_battles(project, filters, style=options.style)
    battles: Any = rows.battles
    left_out: tuple[str, ...] = ()
    if options.exclude_flagged:
        battles, left_out = _without_flagged(project, filters, rows)
    try:
        board = leaderboard(
            battles,
            reference=options.reference,
            rounds=options.rounds,
            seed=options.seed,
            style=options.style,
        )
    except ValueError:  # the reference has no battles
        raise Invalid(
            f"No model named {options.reference!r} has battles here.",
            errors=[{"field": "reference", "message": "Not one of the models with battles."}],
        ) from None
    return LeaderboardReport(
        project=project.slug,
        board=board,
        judgments=judgments,
        left_out_raters=left_out,
        filters=_filters_dict(filters),
        options=options,
        computed_at=timezone.now(),
    )


@dataclass(frozen=True)
class BattleRows:
    battles: Any  # annotation.leaderboard.Battles
    rater: Any  # per judgment of battles: the rater id


def read_battles(project: Project, filters: ExportFilter, *, style: bool) -> tuple[BattleRows, int]:
    """The battles of the window (min_votes applied) and how many judgments the window holds: the
    judgments as a binary COPY, then the pairs (read_pair_models)."""
    import numpy as np

    from annotation.leaderboard import Battles

    judgments = read_int_columns(
        Judgment.objects.filter(project=project)
        .filter(filters.window())
        .order_by()
        .values_list("pair_id", "rater_id", "choice"),
        ["t.pair_id", "t.rater_id", _CHOICE_CODE.format("t.choice")],
    )
    pair_ids, model_a, model_b, style_a, style_b, models = read_pair_models(project, style=style)
    j_pair, j_rater, outcome = judgments.T
    if filters.min_votes:
        # Votes in the window on every pair (gold and unnamed ones too), as the exports count them.
        _, inverse, votes = np.unique(j_pair, return_inverse=True, return_counts=True)
        keep = votes[inverse.reshape(-1)] >= filters.min_votes
        j_pair, j_rater, outcome = j_pair[keep], j_rater[keep], outcome[keep]
    index = np.searchsorted(pair_ids, j_pair)
    known = index < len(pair_ids)
    known[known] = pair_ids[index[known]] == j_pair[known]
    battles = Battles(
        pair=index[known],
        outcome=outcome[known],
        pair_model_a=model_a,
        pair_model_b=model_b,
        models=models,
        pair_style_a=style_a,
        pair_style_b=style_b,
    )
    return BattleRows(battles=battles, rater=j_rater[known]), len(judgments)


def named_pairs(project: Project) -> QuerySet[Pair, Any]:
    """The project's regular pairs that name two different models: those whose judgments are battles."""
    return (
        Pair.objects.filter(project=project, gold__isnull=True)
        .exclude(model_a="")
        .exclude(model_b="")
        .exclude(model_a=F("model_b"))
        .order_by()
    )


def read_pair_models(project: Project, *, style: bool) -> tuple[Any, Any, Any, Any, Any, tuple[str, ...]]:
    """The pairs of named_pairs in id order: ids, model numbers of a and b, the responses' style figures
    (annotation.leaderboard.response_style; None without ``style``), and the model names. Two statements
    (the names; the ids and numbers as a binary COPY), and a third for the texts with ``style``."""
    import numpy as np

    from annotation.leaderboard import response_style

    pairs = named_pairs(project)
    # The distinct (a, b) couples: one scan of the pairs, and few rows (a UNION of the two columns would
    # scan them twice).
    couples = pairs.values_list("model_a", "model_b").distinct()
    models = tuple(sorted({name for couple in couples for name in couple}))
    if not models:
        empty = np.zeros(0, dtype=np.int64)
        figures = np.zeros((0, 4), dtype=np.int64) if style else None
        return empty, empty, empty, figures, figures, ()

    def number(field: str) -> Case:
        return Case(
            *(When(**{field: name}, then=Value(i)) for i, name in enumerate(models)), default=Value(-1)
        )

    coded = pairs.annotate(number_a=number("model_a"), number_b=number("model_b"))
    columns = read_int_columns(
        coded.values_list("id", "number_a", "number_b"), ["t.id", "t.number_a", "t.number_b"]
    )
    # A pair imported between the two statements may name a model the first did not see: it waits for
    # the next computation.
    columns = columns[(columns[:, 1] >= 0) & (columns[:, 2] >= 0)]
    columns = columns[np.argsort(columns[:, 0], kind="stable")]
    ids, model_a, model_b = columns.T
    if not style:
        return ids, model_a, model_b, None, None, models
    text_ids: list[int] = []
    figures_list: list[tuple[int, ...]] = []
    for pk, response_a, response_b in pairs.values_list("id", "response_a", "response_b").iterator(
        chunk_size=PAIR_CHUNK
    ):
        text_ids.append(pk)
        figures_list.append(response_style(response_a) + response_style(response_b))
    found = np.array(text_ids, dtype=np.int64)
    order = np.argsort(found, kind="stable")
    found, figures = found[order], np.array(figures_list, dtype=np.int64).reshape(-1, 8)[order]
    # Pairs are never edited, only added or deleted: a pair deleted between the statements goes.
    position = np.minimum(np.searchsorted(found, ids), max(len(found) - 1, 0))
    kept = (
        (position < len(found)) & (found[position] == ids) if len(found) else np.zeros(len(ids), dtype=bool)
    )
    ids, model_a, model_b, position = ids[kept], model_a[kept], model_b[kept], position[kept]
    return ids, model_a, model_b, figures[position, :4], figures[position, 4:], models


def _without_flagged(
    project: Project, filters: ExportFilter, rows: BattleRows
) -> tuple[Any, tuple[str, ...]]:
    """The battles without the judgments of the raters that the agreement report (same filters) flags."""
    import numpy as np

    report = project_agreement(project, filters=filters)
    flagged = sorted(report.raters[r.rater].pseudonym for r in report.figures.per_rater if r.flags)
    if not flagged:
        return rows.battles, ()
    ids = np.array(Rater.objects.filter(pseudonym__in=flagged).values_list("pk", flat=True), dtype=np.int64)
    keep = ~np.isin(rows.rater, ids)
    battles = replace(rows.battles, pair=rows.battles.pair[keep], outcome=rows.battles.outcome[keep])
    return battles, tuple(flagged)
