"""Who may see which project, and who may rate in it: the one home of that rule."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, OuterRef, Q, QuerySet

from annotation.models import Assignment, Membership, Project
from web.errors import NotFound

User = AbstractBaseUser | AnonymousUser

# The user a project object was loaded for by project_get_visible: user_can_rate
# asks the database only about a project loaded some other way, so a request checks the rule once.
_CHECKED_FOR = "_pairwise_rater_checked"


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
    setattr(project, _CHECKED_FOR, user.pk)
    return project


def user_can_rate(*, project: Project, user: Any) -> bool:
    """Raters are members (or in the project's rater group); staff may rate too, to try a project out."""
    if not user.is_authenticated or not user.is_active:
        return False
    if getattr(project, _CHECKED_FOR, None) == user.pk:
        return True
    return projects_visible_to(user).filter(pk=project.pk).exists()


def can_rate_sql(user: Any, project_column: str) -> tuple[str, list[Any]]:
    """user_can_rate as an SQL boolean on a project id column, for the rating path's raw reads: the same
    rule as projects_visible_to (tests/annotation/test_engine.py checks each way in)."""
    if not user.is_authenticated or not user.is_active:
        return "FALSE", []
    if user.is_staff:
        return "TRUE", []
    groups = user.groups.through._meta
    member_of = (
        f"SELECT 1 FROM {groups.db_table} ug JOIN {Project._meta.db_table} gp"
        f" ON gp.rater_group_id = ug.{groups.get_field('group').column}"
        f" WHERE gp.id = {project_column} AND ug.{groups.get_field('user').column} = %s"
    )
    membership = (
        f"SELECT 1 FROM {Membership._meta.db_table} m"
        f" WHERE m.project_id = {project_column} AND m.user_id = %s"
    )
    return f"(EXISTS ({membership}) OR EXISTS ({member_of}))", [user.pk, user.pk]


def assignment_get_own(*, project: Project, user: Any, assignment_id: int) -> Assignment:
    """One of the user's own assignments in the project, with its pair; NotFound for anyone else's (a rater
    reads only the pairs they were served)."""
    assignment = (
        Assignment.objects.select_related("pair")
        .filter(pk=assignment_id, project=project, rater__user=user)
        .first()
    )
    if assignment is None:
        raise NotFound(f"No assignment {assignment_id} of yours.")
    return assignment
