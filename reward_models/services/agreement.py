"""The raters' agreement on a snapshot's judgments, recorded on each run beside its accuracy."""

from __future__ import annotations

import dataclasses
from typing import Any

from annotation.selectors import project_agreement

from ..models import DatasetSnapshot
from .snapshots import snapshot_filters


def snapshot_human_agreement(snapshot: DatasetSnapshot) -> dict[str, Any]:
    """The project's agreement report (annotation.selectors.project_agreement) on the snapshot's judgments,
    as a dict: percent_agreement, decisive_agreement, ceiling_accuracy, their intervals, ... The per-rater
    rows and the per-day counts are left out: they belong to the dashboard, not to every run's row.

    The snapshot's filters, with its creation time as the end of the window when it had none, so that
    judgments made after the snapshot do not count (the snapshot is written before its row, so every
    judgment it holds is older than created_at).
    """
    filters = snapshot_filters(snapshot)
    if filters.until is None:
        filters = dataclasses.replace(filters, until=snapshot.created_at)
    report = project_agreement(snapshot.project, filters=filters).as_dict()
    return {key: value for key, value in report.items() if key not in ("per_rater", "judgments_per_day")}
