"""The counters behind progress checked against the rows: what the API answered before the counters
(the counts of issue 22's baseline, written out here as the reference) and the recount."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import F, Q, Sum

from annotation import services
from annotation.models import Assignment, Judgment, Pair, Project, ProjectCounter, Rater
from annotation.selectors import rater_progress

# Progress as it was counted from the rows before the counters (selectors/progress.py until issue 22), with
# a pair's quota raised by a reviewer's extra_judgments (issue 19).
_PROGRESS_BY_ROWS = """
SELECT
    (SELECT count(*) FROM annotation_judgment WHERE project_id = %s AND rater_id = %s),
    (SELECT count(*) FROM annotation_pair
      WHERE project_id = %s AND gold IS NULL AND judgment_count < %s + extra_judgments),
    (SELECT count(*) FROM annotation_pair p JOIN annotation_assignment a ON a.pair_id = p.id
      WHERE p.project_id = %s AND p.gold IS NULL AND p.judgment_count < %s + p.extra_judgments
        AND a.rater_id = %s AND a.status IN ('judged', 'skipped', 'expired'))
"""


def progress_by_rows(project: Project, rater_id: int) -> dict[str, int]:
    quota = project.judgments_per_pair
    with connection.cursor() as cursor:
        cursor.execute(
            _PROGRESS_BY_ROWS, [project.pk, rater_id, project.pk, quota, project.pk, quota, rater_id]
        )
        done, open_pairs, finished = cursor.fetchone()
    return {"done": done, "available": open_pairs - finished}


def counted(project: Project) -> dict[str, Any]:
    """Every rater's progress and the project's pair counts, from the counters."""
    project.refresh_from_db()
    raters = set(Assignment.objects.filter(project=project).values_list("rater_id", flat=True))
    raters |= set(Judgment.objects.filter(project=project).values_list("rater_id", flat=True))
    raters |= set(Rater.objects.filter(user__memberships__project=project).values_list("pk", flat=True))
    sums = ProjectCounter.objects.filter(project=project).aggregate(
        open=Sum("open_pairs"), regular=Sum("regular_pairs"), gold=Sum("gold_pairs")
    )
    return {
        "raters": {rater: rater_progress(project=project, rater=rater) for rater in sorted(raters)},
        "pairs": {key: value or 0 for key, value in sums.items()},
    }


def by_rows(project: Project) -> dict[str, Any]:
    """The same figures counted from the rows."""
    project.refresh_from_db()
    pairs = Pair.objects.filter(project=project)
    regular = pairs.filter(gold__isnull=True)
    return {
        "raters": {rater: progress_by_rows(project, rater) for rater in counted(project)["raters"]},
        "pairs": {
            "open": regular.filter(
                judgment_count__lt=project.judgments_per_pair + F("extra_judgments")
            ).count(),
            "regular": regular.count(),
            "gold": pairs.filter(~Q(gold=None)).count(),
        },
    }


def assert_counters_equal_recount(project: Project) -> None:
    """The counters say what the rows say, and a recount finds nothing to repair."""
    # (Not a test module: pytest does not rewrite these asserts, so they say what differs themselves.)
    counters, rows = counted(project), by_rows(project)
    assert counters == rows, (counters, rows)
    assert not services.counters_recount(project=project).repaired
    counters, rows = counted(project), by_rows(project)
    assert counters == rows, (counters, rows)
