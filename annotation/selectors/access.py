"""Who may see which project, and who may rate in it: the one home of that rule."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, OuterRef, Q, QuerySet

from annotation.errors import NotFound
from annotation.models import Membership, Project

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
