"""Serving a rater their next pair: the rater's row locked, the assignment they hold given back or
closed, then a gold or a regular pair claimed; what is served comes with the rater's progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from annotation.models import Assignment, AssignmentStatus, Project, Rater
from annotation.selectors import rater_progress, user_can_rate
from web.errors import Forbidden

from ..raters import rater_get_or_create
from .claim import Found, claim
from .rules import gold_due, keep_held


@dataclass(frozen=True)
class Served:
    """A pair served to a rater: their assignment (its pair and rater loaded) and their progress in the
    project, as selectors.rater_progress counts it."""

    assignment: Assignment
    progress: dict[str, int]


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
        found = next_for(project=project, rater=rater, now=now, held_id=row[-1])
    return with_progress(project, found)


def next_for(*, project: Project, rater: Rater, now: datetime, held_id: int | None) -> Found | None:
    """assignment_next's choice, in the caller's transaction, which has locked the rater's row. held_id:
    the rater's open assignment in the project as the caller saw it (the claim looks again)."""
    # A held assignment found late by the claim is served or closed on the next round, after which the
    # rater holds nothing: two rounds at most, the third is a margin.
    for _ in range(3):
        if held_id is not None:
            current = Assignment.objects.select_related("pair").get(pk=held_id)
            current.rater = rater
            if keep_held(current=current, project=project, now=now):
                return Found(current)
        claimed = None
        if gold_due(project=project, rater=rater):
            claimed = claim(project=project, rater=rater, now=now, gold=True)
        if claimed is None:
            claimed = claim(project=project, rater=rater, now=now, gold=False)
        if not isinstance(claimed, int):
            return claimed
        held_id = claimed
    raise AssertionError("the rater's open assignment was neither served nor closed")


def with_progress(project: Project, found: Found | None) -> Served | None:
    """What next_for found, with the rater's progress: read now, after the transaction, where the claim
    did not bring it."""
    if found is None:
        return None
    progress = found.progress
    if progress is None:
        progress = rater_progress(project=project, rater=found.assignment.rater_id)
    return Served(found.assignment, progress)
