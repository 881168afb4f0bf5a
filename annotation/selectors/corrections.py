"""A rater's own judgments, newest first, with their earlier answers: the "my judgments" page and API, and
the rating page's undo (the last one still open to correction)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Prefetch, QuerySet, prefetch_related_objects

from annotation.models import Judgment, JudgmentRevision, Project


def rater_judgments(*, project: Project, user: Any) -> QuerySet[Judgment]:
    """The user's judgments in the project with their pair, project and revisions (one more query for a whole
    page), for the caller to order and page. Staff see their own only, like anyone."""
    if not user.is_authenticated:
        return Judgment.objects.none()
    return (
        Judgment.objects.filter(project=project, rater__user_id=user.pk)
        .select_related("pair", "project")
        .prefetch_related(_revisions())
    )


def _revisions() -> Prefetch:
    return Prefetch("revisions", queryset=JudgmentRevision.objects.order_by("id"))


def judgment_load_revisions(judgment: Judgment) -> Judgment:
    """The judgment with its revisions read (one query), oldest first, as rater_judgments gives them."""
    prefetch_related_objects([judgment], _revisions())
    return judgment


def judgment_to_undo(*, project: Project, rater_id: int, now: datetime) -> dict[str, Any] | None:
    """The rater's last judgment in the project if it may still be corrected ({"id", "until", "left_ms"}),
    else None:
    what the rating page's Undo takes back. One query; none when the project has corrections off."""
    if project.correction_seconds == 0:
        return None
    window = timedelta(seconds=project.correction_seconds)
    last = (
        Judgment.objects.filter(project=project, rater_id=rater_id, assignment__isnull=False)
        .order_by("-id")
        .values("id", "created_at")
        .first()
    )
    if last is None or last["created_at"] + window < now:
        return None
    until = last["created_at"] + window
    return {"id": last["id"], "until": until, "left_ms": int((until - now).total_seconds() * 1000)}
