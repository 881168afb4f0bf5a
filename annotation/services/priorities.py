"""The priorities of a project's pairs under uncertainty selection (Pair.priority, which the engine's claim
orders by): written by reward_models (its active model's uncertainty of each pair) through these services,
so that annotation keeps the one rule of what a priority may be and never imports reward_models."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Case, FloatField, Value, When

from annotation.models import Pair, Project
from web.errors import Invalid

# Pairs written per statement: one UPDATE of this many rows (two arrays of this length as parameters).
BATCH_PAIRS = 5000


def _checked(priorities: Mapping[int, float]) -> list[tuple[int, float]]:
    """(pair id, priority) in id order (concurrent writers lock the rows in the same order), each a finite
    number from 0 to 1; Invalid naming the first that is not, before anything is written."""
    items = []
    for pair_id, value in priorities.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problem = f"pair {pair_id}: the priority {value!r} is not a number"
        elif not 0.0 <= value <= 1.0:
            problem = f"pair {pair_id}: the priority {value!r} is not from 0 to 1"
        else:
            items.append((int(pair_id), float(value)))
            continue
        error = {"field": "priority", "message": problem}
        raise Invalid(f"Priorities not written: {problem}.", errors=[error])
    return sorted(items)


def pair_priorities_set(
    *, project: Project, priorities: Mapping[int, float], now: datetime, stamp: bool = True
) -> int:
    """Write ``priorities`` (pair id -> priority from 0 to 1) on the project's pairs, BATCH_PAIRS per
    statement, and (``stamp``) stamp project.priorities_at with ``now``, from which on the engine orders by
    them; returns how many pairs were written. Ids of other projects' pairs, or of pairs gone since, are
    passed over. A value out of bounds writes nothing (Invalid). The cost follows the pairs written, not the
    project: each statement touches its batch's rows by primary key. One transaction: a caller writing many
    pairs calls it once per batch, so that no claim waits long for the rows it holds."""
    items = _checked(priorities)
    written = 0
    with transaction.atomic():
        for start in range(0, len(items), BATCH_PAIRS):
            batch = items[start : start + BATCH_PAIRS]
            written += _update(project, batch)
        if stamp:
            Project.objects.filter(pk=project.pk).update(priorities_at=now)
    if stamp:
        project.priorities_at = now
    return written


def _update(project: Project, batch: list[tuple[int, float]]) -> int:
    """One UPDATE of the batch's pairs (of the project only)."""
    ids = [pair_id for pair_id, _ in batch]
    values = [value for _, value in batch]
    if connection.vendor == "postgresql":
        table = Pair._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS p SET priority = v.priority "
                "FROM unnest(%s::bigint[], %s::double precision[]) AS v(id, priority) "
                "WHERE p.id = v.id AND p.project_id = %s",
                [ids, values, project.pk],
            )
            return int(cursor.rowcount)
    # Elsewhere (SQLite in development): still one statement, a CASE over the batch.
    whens = [When(pk=pair_id, then=Value(value)) for pair_id, value in batch]
    return Pair.objects.filter(project=project, pk__in=ids).update(
        priority=Case(*whens, output_field=FloatField())
    )


def pair_priorities_void(*, project: Project) -> None:
    """Stop the engine ordering by the project's priorities (priorities_at := null), at once: one row, so
    a caller may do it under its own locks. The values stay on the pairs, never read while the stamp is
    null, until pair_priorities_clear or a round that replaces them."""
    Project.objects.filter(pk=project.pk).update(priorities_at=None)
    project.priorities_at = None


def pair_priorities_clear(*, project: Project) -> int:
    """pair_priorities_void, then take every priority off the project's pairs, BATCH_PAIRS pairs per
    transaction in id order along (project, id), so that no claim waits long for the rows (called inside
    a transaction, that transaction holds them all until it ends). Returns how many pairs carried one."""
    pair_priorities_void(project=project)
    cleared, last = 0, 0
    while True:
        with transaction.atomic():
            ids = list(
                Pair.objects.filter(project=project, pk__gt=last, priority__isnull=False)
                .order_by("pk")
                .values_list("pk", flat=True)[:BATCH_PAIRS]
            )
            if not ids:
                return cleared
            cleared += Pair.objects.filter(pk__in=ids).update(priority=None)
        last = ids[-1]
