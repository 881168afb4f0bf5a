"""A rater's progress in a project, and the project's raters with theirs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Q
from django.utils import timezone

from annotation.models import AssignmentStatus, Judgment, Membership, Pair, Project, Rater


def rater_progress(*, project: Project, rater: Rater) -> dict[str, int]:
    """done: the rater's judgments in the project; available: regular pairs still open to them."""
    done = Judgment.objects.filter(project=project, rater=rater).count()
    open_pairs = Pair.objects.filter(
        project=project, gold__isnull=True, judgment_count__lt=project.judgments_per_pair
    )
    # Two index counts, where "open pairs NOT EXISTS an assignment of the rater" probes every open pair
    # (the rater has at most one assignment per pair).
    available = open_pairs.count() - open_pairs.filter(assignments__rater=rater).count()
    return {"done": done, "available": available}


def project_raters(*, project: Project, now: datetime | None = None) -> list[dict[str, Any]]:
    """The project's members with their progress, in one query."""
    now = now or timezone.now()
    rows = (
        Membership.objects.filter(project=project)
        .select_related("user")
        .annotate(
            judgments=Count(
                "user__rater__judgments",
                filter=Q(user__rater__judgments__project=project),
                distinct=True,
            ),
            last_judgment_at=Max(
                "user__rater__judgments__created_at", filter=Q(user__rater__judgments__project=project)
            ),
            holding=Count(
                "user__rater__assignments",
                filter=Q(
                    user__rater__assignments__project=project,
                    user__rater__assignments__status=AssignmentStatus.ACTIVE,
                    user__rater__assignments__lease_expires_at__gt=now,
                ),
                distinct=True,
            ),
        )
        .order_by("user__username")
    )
    return [
        {
            "username": m.user.get_username(),
            "judgments": m.judgments,
            "last_judgment_at": m.last_judgment_at,
            "holding_assignment": bool(m.holding),
            "added_at": m.added_at,
        }
        for m in rows
    ]
