"""The assignment engine: next, judgment and skip, and the closing of stale leases.

The engine's guarantees (at most judgments_per_pair raters per pair, no pair twice to one rater, one
open assignment per rater and project) hold under any number of concurrent requests and server
processes: every place on a pair is taken or given back while that pair's row is locked, candidates are
picked with SELECT ... FOR UPDATE SKIP LOCKED so raters never queue behind each other (except, briefly,
when the only pairs with a place free for the rater are held by other requests: see pairwise_claim), and
the unique constraints in annotation.models back the rest. On SQLite (the quickstart) transactions are
IMMEDIATE, which serialises them instead.

The rating path is kept to few statements (tests/annotation/test_query_counts.py lists them): on
PostgreSQL a new pair is claimed by pairwise_claim() (migration 0005), which runs the claim's loop inside
the database in one call; the caller's assignment is read with its rows locked in one statement; and
judgment_record_and_next and assignment_skip_and_next answer and serve the next pair in one transaction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import Count, Exists, F, Field, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.errors import Conflict, Forbidden, Invalid, NotFound
from annotation.models import (
    MAX_TIME_MS,
    Assignment,
    AssignmentStatus,
    Judgment,
    Pair,
    Project,
    Rater,
    RationaleMode,
    ShownChoice,
    Side,
)
from annotation.selectors import (
    can_rate_sql,
    held_places,
    progress_columns,
    progress_from,
    rater_progress,
    user_can_rate,
)

from .raters import rater_get_or_create

# How many locked-but-full candidates one request tries before it looks again from the top.
_CLAIM_ATTEMPTS = 8


@dataclass(frozen=True)
class Served:
    """A pair served to a rater: their assignment (its pair and rater loaded) and their progress in the
    project, as selectors.rater_progress counts it."""

    assignment: Assignment
    progress: dict[str, int]


@dataclass(frozen=True)
class _Found:
    """The assignment the engine found for a rater, with their progress when the statement that found it
    read it along (a claim on PostgreSQL)."""

    assignment: Assignment
    progress: dict[str, int] | None = None


def _places(pair: Pair, now: datetime, *, exclude: int | None = None) -> tuple[int, Counter[str]]:
    """(places taken, sides shown so far) for a pair whose row the caller has locked."""
    rows = Assignment.objects.filter(pair=pair).filter(
        Q(status=AssignmentStatus.JUDGED) | Q(status=AssignmentStatus.ACTIVE, lease_expires_at__gt=now)
    )
    if exclude is not None:
        rows = rows.exclude(pk=exclude)
    statuses = list(rows.values_list("status", "shown_left"))
    held = sum(1 for status, _ in statuses if status == AssignmentStatus.ACTIVE)
    return pair.judgment_count + held, Counter(side for _, side in statuses)


def _side_for(pair: Pair, sides: Counter[str]) -> str:
    """Show response A on the side it has been shown on least; ties alternate with the pair's id, so the
    first rater of every pair does not always see A on the left."""
    if sides[Side.A] != sides[Side.B]:
        return Side.A if sides[Side.A] < sides[Side.B] else Side.B
    return Side.A if (pair.pk + sides[Side.A]) % 2 == 0 else Side.B


def _gold_due(*, project: Project, rater: Rater) -> bool:
    served = Assignment.objects.filter(project=project, rater=rater).aggregate(
        total=Count("pk"), gold=Count("pk", filter=Q(pair__gold__isnull=False))
    )
    return served["gold"] + 1 <= project.gold_fraction * (served["total"] + 1)


def _claim(*, project: Project, rater: Rater, now: datetime, gold: bool) -> _Found | int | None:
    """A new assignment, None when no pair is free, or (PostgreSQL) the id of an open assignment the rater
    holds after all (see pairwise_claim)."""
    if connection.vendor == "postgresql":
        return _claim_in_postgresql(project=project, rater=rater, now=now, gold=gold)
    return _claim_with_orm(project=project, rater=rater, now=now, gold=gold)


def _claim_in_postgresql(*, project: Project, rater: Rater, now: datetime, gold: bool) -> _Found | int | None:
    """The claim in one round trip: pairwise_claim() (migration 0005) runs _claim_with_orm's loop inside
    PostgreSQL (candidate probes with SKIP LOCKED, the recount under the lock, the side, the INSERT) and
    the pair comes back with it."""
    # The rater's progress comes along: this statement's snapshot follows the transaction's earlier
    # writes (a judgment just made), and the one assignment the claim adds changes no count.
    progress, progress_params = progress_columns(project=project, rater=rater)
    pair_names = [field.attname for field in Pair._meta.concrete_fields]
    sql = (
        "SELECT c.assignment_id, c.shown_left, c.already_held, progress.*,"
        f" {_columns(Pair, 'p', pair_names)}"
        " FROM pairwise_claim(%s, %s, %s, %s, %s, %s, %s) c JOIN annotation_pair p ON p.id = c.pair_id"
        f" CROSS JOIN (SELECT {progress}) AS progress (done, open_pairs, finished)"
    )
    params = [
        project.pk,
        rater.pk,
        now,
        project.lease_seconds,
        project.judgments_per_pair,
        gold,
        _CLAIM_ATTEMPTS,
        *progress_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    assignment_id, shown_left, already_held, done, open_pairs, finished = row[:6]
    if already_held:
        return int(assignment_id)
    assignment = Assignment(
        pk=assignment_id,
        project=project,
        pair=_from_db(Pair, pair_names, row[6:]),
        rater=rater,
        shown_left=shown_left,
        status=AssignmentStatus.ACTIVE,
        served_at=now,
        lease_expires_at=now + timedelta(seconds=project.lease_seconds),
    )
    assignment._state.adding = False
    assignment._state.db = connection.alias
    return _Found(assignment, progress_from(done, open_pairs, finished))


def _claim_with_orm(*, project: Project, rater: Rater, now: datetime, gold: bool) -> _Found | int | None:
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
        # Gold pairs check raters and are shown to any number of them; regular pairs fill up to the quota.
        candidates = candidates.alias(
            taken=F("judgment_count") + Coalesce(held_places(OuterRef("pk"), now), Value(0))
        ).filter(judgment_count__lt=quota, taken__lt=quota)
    # Regular pairs one judgment_count at a time, fullest first: each query then walks the
    # (project, judgment_count, id) index in order and stops at the first free pair, where one
    # "ORDER BY judgment_count DESC, id" query reads and sorts every open pair of the project.
    levels: list[int | None] = [None] if gold else list(range(quota - 1, -1, -1))
    tried: list[int] = []
    for level in levels:
        level_candidates = candidates if level is None else candidates.filter(judgment_count=level)
        while len(tried) < _CLAIM_ATTEMPTS:
            pair = level_candidates.exclude(pk__in=tried).first()
            if pair is None:
                break
            # The candidate query's snapshot predates our lock; count again now that the row is ours.
            taken, sides = _places(pair, now)
            if gold or taken < quota:
                assignment = Assignment.objects.create(
                    project=project,
                    pair=pair,
                    rater=rater,
                    shown_left=_side_for(pair, sides),
                    served_at=now,
                    lease_expires_at=now + timedelta(seconds=project.lease_seconds),
                )
                return _Found(assignment)
            tried.append(pair.pk)
    return None


def assignment_next(*, project: Project, user: Any, now: datetime | None = None) -> Served | None:
    """The caller's next assignment in the project with their progress, or None when nothing is left for
    them.

    A rater holding an unexpired assignment gets it back. One whose lease has run out gets it back too
    (with a new lease) if its place is still free; otherwise it is closed as expired and a new pair is
    served. Pairs nearest completion come first, then the oldest; gold pairs at the project's gold_fraction.
    """
    if not user_can_rate(project=project, user=user):
        raise Forbidden("You are not a rater in this project.")
    now = now or timezone.now()
    with transaction.atomic():
        # One request per rater at a time: a double click must not open two assignments. The rater's row
        # is locked and their open assignment in the project found in one statement (whose snapshot may
        # predate the lock: on PostgreSQL pairwise_claim looks again before it claims anything).
        held = Assignment.objects.filter(
            project=project, rater=OuterRef("pk"), status=AssignmentStatus.ACTIVE
        )
        names = [field.attname for field in Rater._meta.concrete_fields]
        locked = (
            Rater.objects.select_for_update(of=("self",))
            .filter(user=user)
            .annotate(held_id=Subquery(held.values("pk")[:1]))
            .values_list(*names, "held_id")
        )
        row = locked.first()
        if row is None:
            rater_get_or_create(user=user)
            row = locked.first()
            assert row is not None
        rater = Rater.from_db(locked.db, names, row[:-1])
        found = _next_for(project=project, rater=rater, now=now, held_id=row[-1])
    return _served(project, found)


def _next_for(*, project: Project, rater: Rater, now: datetime, held_id: int | None) -> _Found | None:
    """assignment_next's choice, in the caller's transaction, which has locked the rater's row. held_id:
    the rater's open assignment in the project as the caller saw it (the claim looks again)."""
    # A held assignment found late by the claim is served or closed on the next round, after which the
    # rater holds nothing: two rounds at most, the third is a margin.
    for _ in range(3):
        if held_id is not None:
            current = Assignment.objects.select_related("pair").get(pk=held_id)
            current.rater = rater
            if _keep_held(current=current, project=project, now=now):
                return _Found(current)
        has_gold = (
            project.gold_fraction > 0 and Pair.objects.filter(project=project, gold__isnull=False).exists()
        )
        claimed = None
        if has_gold and _gold_due(project=project, rater=rater):
            claimed = _claim(project=project, rater=rater, now=now, gold=True)
        if claimed is None:
            claimed = _claim(project=project, rater=rater, now=now, gold=False)
        if not isinstance(claimed, int):
            return claimed
        held_id = claimed
    raise AssertionError("the rater's open assignment was neither served nor closed")


def _served(project: Project, found: _Found | None) -> Served | None:
    """What _next_for found, with the rater's progress: read now, after the transaction, where the claim
    did not bring it."""
    if found is None:
        return None
    progress = found.progress
    if progress is None:
        progress = rater_progress(project=project, rater=found.assignment.rater_id)
    return Served(found.assignment, progress)


def _keep_held(*, current: Assignment, project: Project, now: datetime) -> bool:
    """Whether the rater gets their open assignment back: yes while its lease runs; after that, with a new
    lease if its place is still free, else it is closed as expired (the caller's transaction holds the
    rater's row)."""
    if current.lease_expires_at > now:
        return True
    pair = Pair.objects.select_for_update().get(pk=current.pair_id)
    taken, _ = _places(pair, now, exclude=current.pk)
    if current.pair.gold is not None or taken < project.judgments_per_pair:
        current.lease_expires_at = now + timedelta(seconds=project.lease_seconds)
        current.save(update_fields=["lease_expires_at"])
        return True
    current.status = AssignmentStatus.EXPIRED
    current.finished_at = now
    current.save(update_fields=["status", "finished_at"])
    return False


# The columns _own_assignment_locked reads of each row, and builds each model from (the pair's texts and
# metadata stay unread: judgment and skip need neither).
_READ = (
    (Assignment, "a", [f.attname for f in Assignment._meta.concrete_fields]),
    (Project, "pr", [f.attname for f in Project._meta.concrete_fields]),
    (Pair, "p", ["id", "project_id", "gold", "judgment_count"]),
    (Rater, "r", ["id", "user_id"]),
)


@dataclass(frozen=True)
class Owned:
    """The caller's assignment, with its project, pair and rater loaded, and whether the caller may still
    rate in its project (selectors.user_can_rate)."""

    assignment: Assignment
    can_rate: bool


def _own_assignment_locked(*, assignment_id: int, user: Any, lock_rater: bool = False) -> Owned:
    """The caller's assignment with its project, pair and rater, the pair's and the assignment's rows
    locked (after the rater's with lock_rater), and whether they may still rate read along: one
    statement, written out (the ORM's compiling of it cost more than the database's work). Call inside a
    transaction."""
    can_rate, params = can_rate_sql(user, "a.project_id")
    columns = ", ".join(_columns(model, alias, names) for model, alias, names in _READ)
    # Lock order everywhere: rater (the one-request-at-a-time lock of `next`), pair, assignment; rows are
    # locked in the order named here.
    lock = (
        " FOR UPDATE OF " + ("r, p, a" if lock_rater else "p, a")
        if connection.features.has_select_for_update_of
        else ""
    )
    sql = (
        f"SELECT {columns}, {can_rate} FROM annotation_assignment a"
        " JOIN annotation_rater r ON r.id = a.rater_id JOIN annotation_pair p ON p.id = a.pair_id"
        f" JOIN annotation_project pr ON pr.id = a.project_id WHERE a.id = %s AND r.user_id = %s{lock}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, assignment_id, user.pk])
        row = cursor.fetchone()
    if row is None:
        raise NotFound(f"No assignment {assignment_id} of yours.")
    built, start = [], 0
    for model, _, names in _READ:
        built.append(_from_db(model, names, row[start : start + len(names)]))
        start += len(names)
    assignment, project, pair, rater = built
    assignment.project, assignment.pair, assignment.rater = project, pair, rater
    return Owned(assignment, can_rate=bool(row[-1]))


def _columns(model: Any, alias: str, names: list[str]) -> str:
    """The named fields' columns of a table aliased `alias`, for a SELECT list."""
    fields = [cast("Field[Any, Any]", model._meta.get_field(name)) for name in names]
    return ", ".join(f"{alias}.{field.column}" for field in fields)


def _from_db(model: Any, names: list[str], values: Any) -> Any:
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


def _judgment_errors(
    *, project: Project, choice: str, strength: int | None, rationale: str
) -> list[dict[str, Any]]:
    """What the project allows: ties, strength and its range, rationale. Types are the caller's business
    (the API's serializer, the pages' form) and are not checked again here."""
    errors = []

    def error(field: str, message: str) -> None:
        errors.append({"field": field, "message": message})

    if choice == ShownChoice.TIE and not project.allow_tie:
        error("choice", "This project does not allow ties.")
    if project.strength_levels == 0:
        if strength is not None:
            error("strength", "This project does not ask for strength.")
    elif choice == ShownChoice.TIE:
        if strength is not None:
            error("strength", "A tie has no strength.")
    elif strength is None:
        error("strength", f"Required: 1 to {project.strength_levels}.")
    elif not 1 <= strength <= project.strength_levels:
        error("strength", f"Must be a whole number from 1 to {project.strength_levels}.")
    if project.rationale == RationaleMode.OFF and rationale:
        error("rationale", "This project does not take a rationale.")
    if project.rationale == RationaleMode.REQUIRED and not rationale.strip():
        error("rationale", "Required in this project.")
    return errors


def judgment_record(
    *,
    assignment_id: int,
    user: Any,
    choice: str,
    strength: int | None = None,
    rationale: str = "",
    client_time_ms: int | None = None,
    now: datetime | None = None,
) -> Judgment:
    """Record the rater's judgment on their assignment: atomic, and at most one per assignment.

    `choice` is what the rater saw: left, right or tie; it is stored as a, b or tie. A judgment that
    arrives after the lease is accepted while the pair still has a free place, and refused with
    `assignment_expired` once the place has gone to someone else.
    """
    with transaction.atomic():
        owned = _own_assignment_locked(assignment_id=assignment_id, user=user)
        return _record(
            owned=owned,
            choice=choice,
            strength=strength,
            rationale=rationale,
            client_time_ms=client_time_ms,
            now=now or timezone.now(),
        )


def judgment_record_and_next(
    *,
    assignment_id: int,
    user: Any,
    choice: str,
    strength: int | None = None,
    rationale: str = "",
    client_time_ms: int | None = None,
    now: datetime | None = None,
) -> tuple[Judgment, Served | None]:
    """judgment_record, then assignment_next in the assignment's project, in one transaction: one round
    trip per judgment for the rater, one commit for the database. Nothing is served when the judgment is
    refused."""
    with transaction.atomic():
        owned = _own_assignment_locked(assignment_id=assignment_id, user=user, lock_rater=True)
        now = now or timezone.now()
        judgment = _record(
            owned=owned,
            choice=choice,
            strength=strength,
            rationale=rationale,
            client_time_ms=client_time_ms,
            now=now,
        )
        project = owned.assignment.project
        found = _next_for(project=project, rater=owned.assignment.rater, now=now, held_id=None)
    return judgment, _served(project, found)


def _record(
    *,
    owned: Owned,
    choice: str,
    strength: int | None,
    rationale: str,
    client_time_ms: int | None,
    now: datetime,
) -> Judgment:
    assignment = owned.assignment
    project, pair = assignment.project, assignment.pair
    errors = _judgment_errors(project=project, choice=choice, strength=strength, rationale=rationale)
    if errors:
        raise Invalid("The judgment is invalid.", errors=errors)
    if not owned.can_rate:
        raise Forbidden("You are no longer a rater in this project.")
    if assignment.status == AssignmentStatus.JUDGED:
        existing = Judgment.objects.filter(assignment=assignment).values_list("pk", flat=True).first()
        raise Conflict("This assignment is already judged.", code="already_judged", judgment=existing)
    if assignment.status == AssignmentStatus.SKIPPED:
        raise Conflict("This assignment was skipped.", code="assignment_skipped")
    if assignment.lease_expires_at <= now or assignment.status == AssignmentStatus.EXPIRED:
        taken, _ = _places(pair, now, exclude=assignment.pk)
        if pair.gold is None and taken >= project.judgments_per_pair:
            raise Conflict(
                "This assignment expired and its place went to another rater; ask for the next pair.",
                code="assignment_expired",
            )
    judgment = Judgment(
        project=project,
        pair=pair,
        rater_id=assignment.rater_id,
        assignment=assignment,
        choice=assignment.stored_choice(choice),
        strength=strength if choice != ShownChoice.TIE else None,
        rationale=rationale,
        shown_left=assignment.shown_left,
        time_on_task_ms=min(MAX_TIME_MS, max(0, int((now - assignment.served_at).total_seconds() * 1000))),
        client_time_ms=client_time_ms,
        created_at=now,
    )
    _judgment_write(judgment)
    assignment.status = AssignmentStatus.JUDGED
    assignment.finished_at = now
    return judgment


def _judgment_write(judgment: Judgment) -> None:
    """INSERT the judgment, close its assignment, count it on its pair: one statement on PostgreSQL (data-
    modifying CTEs), three on SQLite, which has none."""
    ops = connection.ops
    now = ops.adapt_datetimefield_value(judgment.created_at)
    insert = (
        "INSERT INTO annotation_judgment (project_id, pair_id, rater_id, assignment_id, choice, strength,"
        " rationale, shown_left, time_on_task_ms, client_time_ms, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
    )
    insert_params = [
        judgment.project_id,
        judgment.pair_id,
        judgment.rater_id,
        judgment.assignment_id,
        judgment.choice,
        judgment.strength,
        judgment.rationale,
        judgment.shown_left,
        judgment.time_on_task_ms,
        judgment.client_time_ms,
        now,
    ]
    close = "UPDATE annotation_assignment SET status = %s, finished_at = %s WHERE id = %s"
    close_params = [AssignmentStatus.JUDGED.value, now, judgment.assignment_id]
    count = "UPDATE annotation_pair SET judgment_count = judgment_count + 1 WHERE id = %s"
    count_params = [judgment.pair_id]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH closed AS ({close}), counted AS ({count}) {insert}",
                [*close_params, *count_params, *insert_params],
            )
            (judgment.pk,) = cursor.fetchone()
        else:
            cursor.execute(insert, insert_params)
            (judgment.pk,) = cursor.fetchone()
            cursor.execute(close, close_params)
            cursor.execute(count, count_params)
    judgment._state.adding = False
    judgment._state.db = connection.alias


def assignment_skip(
    *, assignment_id: int, user: Any, reason: str = "", now: datetime | None = None
) -> Assignment:
    """Skip: the pair is never served to this rater again and its place goes back to the pool."""
    with transaction.atomic():
        owned = _own_assignment_locked(assignment_id=assignment_id, user=user)
        return _skip(assignment=owned.assignment, reason=reason, now=now or timezone.now())


def assignment_skip_and_next(
    *, assignment_id: int, user: Any, reason: str = "", now: datetime | None = None
) -> tuple[Assignment, Served | None]:
    """assignment_skip, then assignment_next in the assignment's project, in one transaction."""
    with transaction.atomic():
        owned = _own_assignment_locked(assignment_id=assignment_id, user=user, lock_rater=True)
        if not owned.can_rate:
            raise Forbidden("You are no longer a rater in this project.")
        now = now or timezone.now()
        assignment = owned.assignment
        skipped = _skip(assignment=assignment, reason=reason, now=now)
        found = _next_for(project=assignment.project, rater=assignment.rater, now=now, held_id=None)
    return skipped, _served(assignment.project, found)


def _skip(*, assignment: Assignment, reason: str, now: datetime) -> Assignment:
    if assignment.status == AssignmentStatus.JUDGED:
        raise Conflict("This assignment is already judged.", code="already_judged")
    if assignment.status == AssignmentStatus.SKIPPED:
        return assignment
    assignment.status = AssignmentStatus.SKIPPED
    assignment.skip_reason = reason
    assignment.finished_at = now
    assignment.save(update_fields=["status", "skip_reason", "finished_at"])
    return assignment


def leases_expire(*, now: datetime | None = None) -> int:
    """Close active assignments whose lease has run out, so admin pages show what is really held.

    Not needed for correctness: an expired lease already holds no place. A late judgment on a closed
    assignment is still accepted while the pair has a free place.
    """
    now = now or timezone.now()
    return Assignment.objects.filter(status=AssignmentStatus.ACTIVE, lease_expires_at__lte=now).update(
        status=AssignmentStatus.EXPIRED, finished_at=now
    )
