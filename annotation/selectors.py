"""Reads: who may see which project, a rater's progress, a project's raters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet
from django.utils import timezone

from .errors import NotFound
from .models import AssignmentStatus, Judgment, Membership, Pair, Project, Rater

User = AbstractBaseUser | AnonymousUser


def projects_visible_to(user: Any) -> QuerySet[Project]:
    """Staff see every project; a rater sees those they are a member of, directly or by group."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.is_staff:
        return Project.objects.all()
    return Project.objects.filter(
        Q(Exists(Membership.objects.filter(project=OuterRef("pk"), user=user)))
        | Q(rater_group__in=user.groups.all())
    )


def project_get_visible(*, slug: str, user: Any) -> Project:
    """The project, or NotFound when it does not exist or the user may not see it (no existence leak)."""
    project = projects_visible_to(user).filter(slug=slug).first()
    if project is None:
        raise NotFound(f"No project {slug!r}.")
    return project


def user_can_rate(*, project: Project, user: Any) -> bool:
    """Raters are members (or in the project's rater group); staff may rate too, to try a project out."""
    if not user.is_authenticated or not user.is_active:
        return False
    return projects_visible_to(user).filter(pk=project.pk).exists()


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
