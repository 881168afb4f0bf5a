"""The engine's writes on an assignment the caller owns: a judgment recorded (one statement on
PostgreSQL), a skip, each optionally followed by the next pair in the same transaction; and the closing of
stale leases. Each starts by reading the caller's assignment with its rows locked, in one statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from annotation.models import (
    MAX_TIME_MS,
    Assignment,
    AssignmentStatus,
    Judgment,
    Pair,
    Project,
    Rater,
    ShownChoice,
)
from annotation.selectors import can_rate_sql
from web.errors import Conflict, Forbidden, NotFound

from .claim import model_from_row, select_columns
from .counters import (
    JudgmentCounters,
    assignments_expired,
    finished_cte,
    pair_open,
    progress_add,
)
from .rules import judgment_check
from .serving import Served, next_for, with_progress

# The columns _own_assignment_locked reads of each row, and builds each model from (the pair's texts and
# metadata stay unread: judgment and skip need neither).
_READ = (
    (Assignment, "a", [f.attname for f in Assignment._meta.concrete_fields]),
    (Project, "pr", [f.attname for f in Project._meta.concrete_fields]),
    (Pair, "p", ["id", "project_id", "gold", "judgment_count", "extra_judgments", "longer"]),
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
    columns = ", ".join(select_columns(model, alias, names) for model, alias, names in _READ)
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
        built.append(model_from_row(model, names, row[start : start + len(names)]))
        start += len(names)
    assignment, project, pair, rater = built
    assignment.project, assignment.pair, assignment.rater = project, pair, rater
    return Owned(assignment, can_rate=bool(row[-1]))


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
        found = next_for(project=project, rater=owned.assignment.rater, now=now, held_id=None)
    return judgment, with_progress(project, found)


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
    judgment_check(
        assignment=assignment,
        can_rate=owned.can_rate,
        choice=choice,
        strength=strength,
        rationale=rationale,
        now=now,
    )
    judgment = Judgment(
        project=assignment.project,
        pair=assignment.pair,
        rater_id=assignment.rater_id,
        assignment=assignment,
        choice=assignment.stored_choice(choice),
        strength=strength if choice != ShownChoice.TIE else None,
        rationale=rationale,
        shown_left=assignment.shown_left,
        time_on_task_ms=min(MAX_TIME_MS, max(0, int((now - assignment.served_at).total_seconds() * 1000))),
        client_time_ms=client_time_ms,
        created_at=now,
        pair_longer=assignment.pair.longer,
    )
    counters = JudgmentCounters(
        project=assignment.project,
        rater_id=assignment.rater_id,
        pair=assignment.pair,
        expired=assignment.status == AssignmentStatus.EXPIRED,
    )
    _judgment_write(judgment, counters)
    assignment.status = AssignmentStatus.JUDGED
    assignment.finished_at = now
    return judgment


def _judgment_write(judgment: Judgment, counters: JudgmentCounters) -> None:
    """INSERT the judgment, close its assignment, count it on its pair and in the counters (the rater's
    progress, the project's open pairs and data version): one statement on PostgreSQL (data-modifying
    CTEs), several on SQLite, which has none."""
    ops = connection.ops
    now = ops.adapt_datetimefield_value(judgment.created_at)
    insert = (
        "INSERT INTO annotation_judgment (project_id, pair_id, rater_id, assignment_id, choice, strength,"
        " rationale, shown_left, time_on_task_ms, client_time_ms, created_at, pair_longer)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
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
        judgment.pair_longer,
    ]
    close = "UPDATE annotation_assignment SET status = %s, finished_at = %s WHERE id = %s"
    close_params = [AssignmentStatus.JUDGED.value, now, judgment.assignment_id]
    count = "UPDATE annotation_pair SET judgment_count = judgment_count + 1 WHERE id = %s"
    count_params = [judgment.pair_id]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            ctes, counter_params = counters.ctes()
            cursor.execute(
                f"WITH closed AS ({close}), counted AS ({count}), {', '.join(ctes)} {insert}",
                [*close_params, *count_params, *counter_params, *insert_params],
            )
            (judgment.pk,) = cursor.fetchone()
        else:
            cursor.execute(insert, insert_params)
            (judgment.pk,) = cursor.fetchone()
            cursor.execute(close, close_params)
            cursor.execute(count, count_params)
            counters.run_separately()
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
        found = next_for(project=assignment.project, rater=assignment.rater, now=now, held_id=None)
    return skipped, with_progress(assignment.project, found)


def _skip(*, assignment: Assignment, reason: str, now: datetime) -> Assignment:
    if assignment.status == AssignmentStatus.JUDGED:
        raise Conflict("This assignment is already judged.", code="already_judged")
    if assignment.status == AssignmentStatus.SKIPPED:
        return assignment
    # The rater finishes the pair if it is open (an expired assignment was counted when it expired).
    pair, project = assignment.pair, assignment.project
    active = assignment.status == AssignmentStatus.ACTIVE
    assignment.status = AssignmentStatus.SKIPPED
    assignment.skip_reason = reason
    assignment.finished_at = now
    if connection.vendor != "postgresql" or not active:
        assignment.save(update_fields=["status", "skip_reason", "finished_at"])
        if active and pair_open(pair, project):
            progress_add(project_id=project.pk, rows=[(assignment.rater_id, 0, 1)])
        return assignment
    # Whether the pair is open is read by the statement itself, under the quota in force (see
    # counters.JudgmentCounters.ctes).
    cte, params = finished_cte(project_id=project.pk, rater_id=assignment.rater_id, pair_id=pair.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {cte} UPDATE annotation_assignment SET status = %s, skip_reason = %s, finished_at = %s"
            " WHERE id = %s",
            [*params, assignment.status, reason, now, assignment.pk],
        )
    return assignment


def leases_expire(*, now: datetime | None = None) -> int:
    """Close active assignments whose lease has run out, so admin pages show what is really held.

    Not needed for correctness: an expired lease already holds no place. A late judgment on a closed
    assignment is still accepted while the pair has a free place.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # Under their pairs' row locks, as every change of an assignment's status (the counters count
        # an expired assignment on an open pair as finished). SKIP LOCKED on both rows: a pair or an
        # assignment that a request holds is left for the next run, and this never waits for a request
        # (which may itself wait for a pair locked here).
        locked = (
            Assignment.objects.filter(status=AssignmentStatus.ACTIVE, lease_expires_at__lte=now)
            .select_related("pair")
            .only("pair__id")
            .select_for_update(skip_locked=True, of=("self", "pair"))
        )
        expired = [assignment.pk for assignment in locked]
        if not expired:
            return 0
        Assignment.objects.filter(pk__in=expired).update(status=AssignmentStatus.EXPIRED, finished_at=now)
        assignments_expired(assignment_ids=expired)
    return len(expired)
