"""Reads, one module per area; callers import the package (``from annotation import selectors``)."""

from __future__ import annotations

from .access import (
    assignment_get_own,
    can_rate_sql,
    project_get_visible,
    projects_visible_to,
    user_can_rate,
)
from .agreement import AgreementReport, project_agreement
from .corrections import judgment_load_revisions, judgment_to_undo, rater_judgments
from .exports import (
    JUDGMENT_COLUMNS,
    PREFERENCE_COLUMNS,
    ExportFilter,
    as_csv,
    as_jsonl,
    judgment_lines,
    judgment_rows,
    judgments_for_export,
    preference_rows,
)
from .leaderboard import LeaderboardOptions, LeaderboardReport, project_leaderboard
from .progress import (
    held_places,
    progress_columns,
    progress_from,
    project_data_version,
    project_raters,
    rater_progress,
    rater_time_today_ms,
    rater_wait_seconds,
)

__all__ = [
    "JUDGMENT_COLUMNS",
    "PREFERENCE_COLUMNS",
    "AgreementReport",
    "ExportFilter",
    "LeaderboardOptions",
    "LeaderboardReport",
    "as_csv",
    "as_jsonl",
    "assignment_get_own",
    "can_rate_sql",
    "held_places",
    "judgment_lines",
    "judgment_load_revisions",
    "judgment_rows",
    "judgment_to_undo",
    "judgments_for_export",
    "preference_rows",
    "progress_columns",
    "progress_from",
    "project_agreement",
    "project_data_version",
    "project_get_visible",
    "project_leaderboard",
    "project_raters",
    "projects_visible_to",
    "rater_judgments",
    "rater_progress",
    "rater_time_today_ms",
    "rater_wait_seconds",
    "user_can_rate",
]
