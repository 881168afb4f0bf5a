"""The claim of a new pair for a rater, and the SQL plumbing around it: on PostgreSQL one call of
pairwise_claim() (migrations 0005, 0009, 0011 and 0014), on SQLite (the quickstart) the same steps through
the ORM; and the building of model instances from raw rows, which the engine's hand-written reads share.

Under uncertainty selection (Project.selection_in_effect) a regular pair is the greedy choice (the default
order with the pair's priority as one more key) or, with probability selection_epsilon, one drawn uniformly
from the same candidates; the assignment records which arm chose it and the probability that this pair was
the one chosen (migration 0014 says how, and what concurrency leaves inexact)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.db import connection
from django.db.models import Exists, F, Field, OuterRef, Value
from django.db.models.functions import Coalesce

from annotation.models import Arm, Assignment, AssignmentStatus, Pair, Project, Rater, Selection
from annotation.selectors import held_places, progress_columns, progress_from

from .rules import lease_end, pair_quota, places, selection_propensity, side_for

# How many locked-but-full candidates one request tries before it looks again from the top.
CLAIM_ATTEMPTS = 8
# The random arm's rejection probes on the project's id range before it walks the candidates instead: with
# a share s of the range in the candidates, the walk is needed with probability (1 - s)^256. A probe is a
# few index lookups; the walk reads half of C on average, and its expected cost per claim is at most the
# range / 700 rows (s near 1/256): a few thousand at 5 million pairs; 256 failed probes took 4 ms here.
RANDOM_PROBES = 256


@dataclass(frozen=True)
class Draws:
    """The chance in one claim under uncertainty selection: `arm` uniform on [0, 1) (the random arm when
    below selection_epsilon), `seed` for the random arm's draws (-1 to 1, PostgreSQL's setseed; on SQLite a
    random.Random's seed), `probes` the random arm's rejection probes. Tests fix them."""

    arm: float
    seed: float
    probes: int = RANDOM_PROBES

    @classmethod
    def fresh(cls) -> Draws:
        # The operating system's randomness: no random.seed() elsewhere in the process (a trainer's, a
        # test's) can make the arms predictable, and forked workers never share a sequence.
        return cls(arm=_SYSTEM_RANDOM.random(), seed=_SYSTEM_RANDOM.uniform(-1.0, 1.0))


_SYSTEM_RANDOM = random.SystemRandom()
_UNUSED_DRAWS = Draws(arm=1.0, seed=0.0)


@dataclass(frozen=True)
class Found:
    """The assignment the engine found for a rater, with their progress when the statement that found it
    read it along (a claim on PostgreSQL)."""

    assignment: Assignment
    progress: dict[str, int] | None = None


def claim(
    *, project: Project, rater: Rater, now: datetime, gold: bool, draws: Draws | None = None
) -> Found | int | None:
    """A new assignment, None when no pair is free, or (PostgreSQL) the id of an open assignment the rater
    holds after all (see pairwise_claim). `draws`: the chance of uncertainty selection, fresh if None."""
    # Gold pairs check raters: served in their own order whatever the selection, with no arm.
    epsilon = (
        project.selection_epsilon
        if not gold and project.selection_in_effect == Selection.UNCERTAINTY
        else None
    )
    # The draws are read under uncertainty selection only: no randomness spent on the default order.
    draws = draws or (Draws.fresh() if epsilon is not None else _UNUSED_DRAWS)
    if connection.vendor == "postgresql":
        return _claim_in_postgresql(
            project=project, rater=rater, now=now, gold=gold, epsilon=epsilon, draws=draws
        )
    return _claim_with_orm(project=project, rater=rater, now=now, gold=gold, epsilon=epsilon, draws=draws)


def _claim_in_postgresql(
    *, project: Project, rater: Rater, now: datetime, gold: bool, epsilon: float | None, draws: Draws
) -> Found | int | None:
    """The claim in one round trip: pairwise_claim() (migrations 0005, 0009, 0011 and 0014) runs
    _claim_with_orm's loop inside PostgreSQL (candidate probes with SKIP LOCKED, the recount under the
    lock, the side, the INSERT; under uncertainty selection the count of the candidates and the random
    arm's draw) and the pair comes back with it."""
    # The rater's progress comes along: this statement's snapshot follows the transaction's earlier
    # writes (a judgment just made), and the one assignment the claim adds changes no count.
    progress, progress_params = progress_columns(project=project, rater=rater)
    pair_names = [field.attname for field in Pair._meta.concrete_fields]
    sql = (
        "SELECT c.assignment_id, c.shown_left, c.already_held, c.arm, c.propensity, progress.*,"
        f" {select_columns(Pair, 'p', pair_names)}"
        " FROM pairwise_claim(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) c"
        " JOIN annotation_pair p ON p.id = c.pair_id"
        f" CROSS JOIN (SELECT {progress}) AS progress (done, open_pairs, finished)"
    )
    params = [
        project.pk,
        rater.pk,
        now,
        project.lease_seconds,
        project.judgments_per_pair,
        gold,
        CLAIM_ATTEMPTS,
        epsilon,
        draws.arm,
        draws.seed,
        draws.probes,
        *progress_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    assignment_id, shown_left, already_held, arm, propensity, done, open_pairs, finished = row[:8]
    if already_held:
        return int(assignment_id)
    assignment = Assignment(
        pk=assignment_id,
        project=project,
        pair=model_from_row(Pair, pair_names, row[8:]),
        rater=rater,
        shown_left=shown_left,
        status=AssignmentStatus.ACTIVE,
        served_at=now,
        lease_expires_at=lease_end(project, now),
        arm=arm,
        propensity=propensity,
    )
    assignment._state.adding = False
    assignment._state.db = connection.alias
    return Found(assignment, progress_from(done, open_pairs, finished))


def _claim_with_orm(
    *, project: Project, rater: Rater, now: datetime, gold: bool, epsilon: float | None, draws: Draws
) -> Found | int | None:
    """The claim on SQLite, whose IMMEDIATE transactions serialise it; the same steps as pairwise_claim()."""
    held_id = (
        Assignment.objects.filter(project=project, rater=rater, status=AssignmentStatus.ACTIVE)
        .values_list("pk", flat=True)
        .first()
    )
    if held_id is not None:
        return held_id
    quota = project.judgments_per_pair
    candidates = (
        Pair.objects.filter(project=project, gold__isnull=not gold)
        .exclude(Exists(Assignment.objects.filter(pair=OuterRef("pk"), rater=rater)))
        .order_by("-judgment_count", "id")
        # Row locks: a pair another request is filling is skipped, never waited for.
        .select_for_update(skip_locked=True, of=("self",))
    )
    if not gold:
        # Gold pairs check raters and are shown to any number of them; regular pairs fill up to their
        # quota: the project's, plus what a reviewer asked for (extra_judgments).
        candidates = candidates.alias(
            taken=F("judgment_count") + Coalesce(held_places(OuterRef("pk"), now), Value(0))
        ).filter(taken__lt=quota + F("extra_judgments"))
    if epsilon is not None:
        return _claim_uncertain_with_orm(
            project=project, rater=rater, now=now, candidates=candidates, epsilon=epsilon, draws=draws
        )
    # Regular pairs: first the raised ones (extra_judgments > 0, fullest first), then one judgment_count
    # at a time, fullest first: each query then walks the (project, judgment_count, id) index in order and
    # stops at the first free pair, where one "ORDER BY judgment_count DESC, id" query reads and sorts
    # every open pair of the project. The same order as pairwise_claim() (migrations 0005, 0009 and 0011).
    levels: list[dict[str, Any]] = (
        [{}]
        if gold
        else [{"extra_judgments__gt": 0}, *({"judgment_count": level} for level in range(quota - 1, -1, -1))]
    )
    tried: list[int] = []
    for level in levels:
        level_candidates = candidates.filter(**level)
        while len(tried) < CLAIM_ATTEMPTS:
            pair = level_candidates.exclude(pk__in=tried).first()
            if pair is None:
                break
            # The candidate query's snapshot predates our lock; count again now that the row is ours.
            taken, sides = places(pair, now)
            if gold or taken < pair_quota(project, pair):
                assignment = Assignment.objects.create(
                    project=project,
                    pair=pair,
                    rater=rater,
                    shown_left=side_for(pair, sides),
                    served_at=now,
                    lease_expires_at=lease_end(project, now),
                )
                return Found(assignment)
            tried.append(pair.pk)
    return None


def _claim_uncertain_with_orm(
    *, project: Project, rater: Rater, now: datetime, candidates: Any, epsilon: float, draws: Draws
) -> Found | None:
    """Uncertainty selection on SQLite: the candidates enumerated (a quickstart's project is small, and
    the claim is serialised: the set is exact), the greedy one or a uniform draw, as pairwise_claim()."""
    rows = list(candidates.order_by("id").values_list("id", "judgment_count", "extra_judgments", "priority"))
    if not rows:
        return None

    def greedy_order(row: tuple[int, int, int, float | None]) -> tuple[Any, ...]:
        pair_id, judged, extra, priority = row
        # Raised pairs first, fullest first; then the priority, highest first and unscored last; then id.
        return (extra == 0, -judged, priority is None, -(priority or 0.0), pair_id)

    greedy = min(rows, key=greedy_order)[0]
    if draws.arm < epsilon:
        arm, chosen = Arm.RANDOM, rows[random.Random(draws.seed).randrange(len(rows))][0]
    else:
        arm, chosen = Arm.UNCERTAINTY, greedy
    pair = Pair.objects.get(pk=chosen)
    _, sides = places(pair, now)
    assignment = Assignment.objects.create(
        project=project,
        pair=pair,
        rater=rater,
        shown_left=side_for(pair, sides),
        served_at=now,
        lease_expires_at=lease_end(project, now),
        arm=arm,
        propensity=selection_propensity(epsilon=epsilon, candidates=len(rows), greedy=chosen == greedy),
    )
    return Found(assignment)


def select_columns(model: Any, alias: str, names: list[str]) -> str:
    """The named fields' columns of a table aliased `alias`, for a SELECT list."""
    fields = [cast("Field[Any, Any]", model._meta.get_field(name)) for name in names]
    return ", ".join(f"{alias}.{field.column}" for field in fields)


def model_from_row(model: Any, names: list[str], values: Any) -> Any:
    """A model instance from raw column values, through the same converters as the ORM's own reads (on
    SQLite a datetime comes back naive, a boolean as an integer)."""
    converted = []
    for name, value in zip(names, values, strict=True):
        field = model._meta.get_field(name)
        column = field.get_col(model._meta.db_table)
        for convert in connection.ops.get_db_converters(column) + field.get_db_converters(connection):
            value = convert(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, names, converted)
