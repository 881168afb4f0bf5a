"""A rater's progress in a project, and the project's raters with theirs."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Assignment, AssignmentStatus, Judgment, Membership, Pair, Project, Rater


def project_data_version(project: Project) -> int:
    """The project's data version: it goes up with every write that changes what its exports and its
    agreement report read (judgments, corrections, pairs imported, edited, deleted, left out or put back;
    annotation.services.engine.counters). Equal versions mean equal data. A few rows whatever the size."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(sum(version), 0) FROM annotation_projectcounter WHERE project_id = %s",
            [project.pk],
        )
        return int(cursor.fetchone()[0])


def open_pair_q(quota: int, prefix: str = "") -> Q:
    """A regular pair still open (annotation.services.engine.counters.open_sql) as an ORM condition, for
    the project's quota (prefix "pair__" from an assignment): judged fewer times than the quota, or than its
    own raised quota (a reviewer's extra_judgments; the partial index pair_raised finds those few)."""
    return Q(**{f"{prefix}judgment_count__lt": quota}) | Q(
        **{
            f"{prefix}extra_judgments__gt": 0,
            f"{prefix}judgment_count__lt": quota + F(f"{prefix}extra_judgments"),
        }
    )


# The three counts as columns of one SELECT: the rating path asks for progress with every pair it serves,
# on PostgreSQL in the claim's own statement (annotation.services.engine). Each reads counters kept by the
# writes (annotation.services.engine.counters): a rater's row and the project's COUNTER_SHARDS rows, the
# same few rows whatever the size of the project.
_PROGRESS_COLUMNS = """
    (SELECT COALESCE(sum(done), 0) FROM annotation_raterprogress WHERE rater_id = %s AND project_id = %s),
    (SELECT COALESCE(sum(open_pairs), 0) FROM annotation_projectcounter WHERE project_id = %s),
    (SELECT COALESCE(sum(finished), 0) FROM annotation_raterprogress WHERE rater_id = %s AND project_id = %s)
"""


def progress_columns(*, project: Project, rater: Rater | int) -> tuple[str, list[Any]]:
    """rater_progress's counts as three columns for another SELECT (done, open pairs, finished open pairs);
    progress_from turns them into rater_progress's answer."""
    rater_id = rater if isinstance(rater, int) else rater.pk
    return _PROGRESS_COLUMNS, [rater_id, project.pk, project.pk, rater_id, project.pk]


def progress_from(done: int, open_pairs: int, finished: int) -> dict[str, int]:
    return {"done": int(done), "available": int(open_pairs) - int(finished)}


def rater_progress(*, project: Project, rater: Rater | int) -> dict[str, int]:
    """done: the rater's judgments in the project; available: regular pairs still open to them, the one
    they hold included.

    Open pairs (regular, fewer than judgments_per_pair judgments) less the open pairs this rater finished
    (judged, skipped or expired on them): another rater's open assignment leaves the pair open to them.
    Both are counters (annotation.services.engine.counters), equal to the counts of the rows (a test holds
    them so under concurrent raters; manage.py recount_progress repairs them).
    """
    columns, params = progress_columns(project=project, rater=rater)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns}", params)
        return progress_from(*cursor.fetchone())


def rater_wait_seconds(*, project: Project, rater: Rater, now: datetime | None = None) -> int | None:
    """When `next` has nothing for a rater: None if nothing is left for them; 1 if a pair still has a
    place free for them (another request held its row longer than the claim waits: ask again in a
    second); else the seconds until the first lease held by someone else on a pair they could still get
    runs out (ask again then). One query."""
    now = now or timezone.now()
    quota = project.judgments_per_pair
    theirs = Assignment.objects.filter(project=project, rater=rater)
    first_expiry = (
        Assignment.objects.filter(
            project=project,
            status=AssignmentStatus.ACTIVE,
            lease_expires_at__gt=now,
            pair__gold__isnull=True,
        )
        .filter(open_pair_q(quota, "pair__"))
        .exclude(pair__in=theirs.values("pair"))
        .order_by()
        .values("project")
        .annotate(first=Min("lease_expires_at"))
        .values("first")
    )
    free = (
        Pair.objects.filter(project=project, gold__isnull=True)
        .filter(open_pair_q(quota))
        .exclude(Exists(theirs.filter(pair=OuterRef("pk"))))
        .alias(taken=F("judgment_count") + Coalesce(held_places(OuterRef("pk"), now), Value(0)))
        .filter(taken__lt=quota + F("extra_judgments"))
    )
    first, has_free = (
        Project.objects.filter(pk=project.pk)
        .annotate(first=Subquery(first_expiry), free=Exists(free))
        .values_list("first", "free")
        .get()
    )
    if has_free:
        return 1
    if first is None:
        return None
    return max(1, math.ceil((first - now).total_seconds()))


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


def held_places(pair_ref: Any, now: datetime) -> Subquery:
    """Active, unexpired assignments of a pair: places held by raters who have not answered yet."""
    return Subquery(
        Assignment.objects.filter(pair=pair_ref, status=AssignmentStatus.ACTIVE, lease_expires_at__gt=now)
        .order_by()
        .values("pair")
        .annotate(n=Count("pk"))
        .values("n")
    )


def rater_time_today_ms(*, rater: Rater | int, now: datetime | None = None) -> int:
    """The time the rater spent on the pairs they judged since midnight (the server's time zone), in all
    their projects: the browser's count of the time the pair was visible where it sent one, else the
    server's (served to judged). One query."""
    now = timezone.localtime(now or timezone.now())
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rater_id = rater if isinstance(rater, int) else rater.pk
    total = Judgment.objects.filter(rater_id=rater_id, created_at__gte=midnight).aggregate(
        ms=Sum(Coalesce("client_time_ms", "time_on_task_ms"))
    )["ms"]
    return int(total or 0)
