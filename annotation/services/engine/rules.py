"""The engine's policy, readable on its own: what takes a place on a pair, how long a lease runs and
when a lapsed one is renewed, which side response A is shown on, when a gold pair is due, and what a
judgment must satisfy to be recorded."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q

from annotation.models import (
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
from web.errors import Conflict, Forbidden, Invalid

from .counters import assignments_expired, pair_quota


def lease_end(project: Project, now: datetime) -> datetime:
    """When a lease given (or renewed) now runs out."""
    return now + timedelta(seconds=project.lease_seconds)


def places(pair: Pair, now: datetime, *, exclude: int | None = None) -> tuple[int, Counter[str]]:
    """(places taken, sides shown so far) for a pair whose row the caller has locked."""
    rows = Assignment.objects.filter(pair=pair).filter(
        Q(status=AssignmentStatus.JUDGED) | Q(status=AssignmentStatus.ACTIVE, lease_expires_at__gt=now)
    )
    if exclude is not None:
        rows = rows.exclude(pk=exclude)
    statuses = list(rows.values_list("status", "shown_left"))
    held = sum(1 for status, _ in statuses if status == AssignmentStatus.ACTIVE)
    return pair.judgment_count + held, Counter(side for _, side in statuses)


def side_for(pair: Pair, sides: Counter[str]) -> str:
    """Show response A on the side it has been shown on least; ties alternate with the pair's id, so the
    first rater of every pair does not always see A on the left."""
    if sides[Side.A] != sides[Side.B]:
        return Side.A if sides[Side.A] < sides[Side.B] else Side.B
    return Side.A if (pair.pk + sides[Side.A]) % 2 == 0 else Side.B


def selection_propensity(*, epsilon: float, candidates: int, greedy: bool) -> float:
    """The probability that uncertainty selection chose a pair among `candidates` (its random share
    `epsilon`): the greedy arm's choice with 1 - epsilon, any of them with epsilon / candidates."""
    return min(1.0, (1.0 - epsilon) * greedy + epsilon / candidates)


def gold_due(*, project: Project, rater: Rater) -> bool:
    """Whether the rater's next pair is a gold one: the project has gold pairs, and serving one keeps the
    rater's share of gold within the project's gold_fraction."""
    if project.gold_fraction <= 0 or not Pair.objects.filter(project=project, gold__isnull=False).exists():
        return False
    served = Assignment.objects.filter(project=project, rater=rater).aggregate(
        total=Count("pk"), gold=Count("pk", filter=Q(pair__gold__isnull=False))
    )
    return served["gold"] + 1 <= project.gold_fraction * (served["total"] + 1)


def keep_held(*, current: Assignment, project: Project, now: datetime) -> bool:
    """Whether the rater gets their open assignment back: yes while its lease runs; after that, with a new
    lease if its place is still free, else it is closed as expired (the caller's transaction holds the
    rater's row)."""
    if current.lease_expires_at > now:
        return True
    # The assignment again with its pair, both locked (as leases_expire locks them): leases_expire may
    # have closed it since the caller read it, and must not be counted twice or renewed.
    locked = (
        Assignment.objects.select_related("pair")
        .select_for_update(of=("self", "pair"))
        .only("status", "pair__gold", "pair__judgment_count", "pair__extra_judgments")
        .get(pk=current.pk)
    )
    if locked.status != AssignmentStatus.ACTIVE:
        return False
    pair = locked.pair
    taken, _ = places(pair, now, exclude=current.pk)
    if pair.gold is not None or taken < pair_quota(project, pair):
        current.lease_expires_at = lease_end(project, now)
        current.save(update_fields=["lease_expires_at"])
        return True
    current.status = AssignmentStatus.EXPIRED
    current.finished_at = now
    current.save(update_fields=["status", "finished_at"])
    assignments_expired(assignment_ids=[current.pk])
    return False


def judgment_errors(
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


def judgment_check(
    *,
    assignment: Assignment,
    can_rate: bool,
    choice: str,
    strength: int | None,
    rationale: str,
    now: datetime,
) -> None:
    """Raise why this judgment may not be recorded, in this order: the project's rules, the rater no
    longer rating there, an assignment already judged or skipped, and a late judgment whose place went to
    someone else. A judgment after the lease is accepted while the pair still has a free place. The
    caller has locked the pair's and the assignment's rows."""
    project, pair = assignment.project, assignment.pair
    errors = judgment_errors(project=project, choice=choice, strength=strength, rationale=rationale)
    if errors:
        raise Invalid("The judgment is invalid.", errors=errors)
    if not can_rate:
        raise Forbidden("You are no longer a rater in this project.")
    if assignment.status == AssignmentStatus.JUDGED:
        existing = Judgment.objects.filter(assignment=assignment).values_list("pk", flat=True).first()
        raise Conflict("This assignment is already judged.", code="already_judged", judgment=existing)
    if assignment.status == AssignmentStatus.SKIPPED:
        raise Conflict("This assignment was skipped.", code="assignment_skipped")
    if assignment.lease_expires_at <= now or assignment.status == AssignmentStatus.EXPIRED:
        taken, _ = places(pair, now, exclude=assignment.pk)
        if pair.gold is None and taken >= pair_quota(project, pair):
            raise Conflict(
                "This assignment expired and its place went to another rater; ask for the next pair.",
                code="assignment_expired",
            )
