"""The arms of uncertainty selection side by side (the agreement dashboard): the judgments that each arm's
assignments brought, and the raters' agreement on them, computed by the agreement report of
annotation.selectors.agreement on each arm's judgments (no second statistics), cached like it."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from annotation.models import Arm, Project

from .agreement import (
    CACHE_SECONDS,
    CACHE_VERSION,
    AgreementReport,
    AgreementRows,
    RaterName,
    cached_on_fingerprint,
    read_gold_columns,
    read_judgment_columns,
    report_from_rows,
)
from .exports import ExportFilter

# Judgments on regular pairs, by the arm of the assignment that served them; "default": no arm, the
# default order (before the project chose uncertainty, or while no model had scored its pairs) and
# judgments imported from elsewhere. Gold pairs are served apart from either arm and left out.
ARMS: tuple[tuple[str, Q], ...] = (
    (Arm.UNCERTAINTY.value, Q(assignment__arm=Arm.UNCERTAINTY)),
    (Arm.RANDOM.value, Q(assignment__arm=Arm.RANDOM)),
    ("default", Q(assignment__arm__isnull=True)),
)


def arm_agreement(project: Project) -> dict[str, AgreementReport]:
    """The agreement report of each arm's judgments on regular pairs, by arm ("uncertainty", "random",
    "default"), from the cache while no judgment or pair changed (one query), otherwise computed (the gold
    pairs' statement and one judgment statement per arm) and cached. The reports carry no rater names:
    the page shows no per-rater row per arm."""
    from annotation.agreement.statistics import dense_index  # numpy: only when a page is drawn

    key = f"agreement-arms:v{CACHE_VERSION}:{project.pk}"

    def compute(state: tuple[Any, ...]) -> dict[str, AgreementReport]:
        import numpy as np

        filters = ExportFilter()
        gold = read_gold_columns(project)
        reports = {}
        for arm, condition in ARMS:
            judgments = read_judgment_columns(project, filters, where=condition)
            judgments = judgments[~np.isin(judgments[:, 0], gold[:, 0])]
            unnamed: dict[int, RaterName] = {
                int(rater): RaterName("", "") for rater in dense_index(judgments[:, 1])[0].tolist()
            }
            rows = AgreementRows(judgments=judgments, gold=gold, raters=unnamed, counts=state[1])
            reports[arm] = report_from_rows(project, filters=filters, rows=rows)
        return reports

    return cached_on_fingerprint(key, project, compute, CACHE_SECONDS)
