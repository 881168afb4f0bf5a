"""Writes, one module per area; every caller (API, pages, admin, commands, tasks) goes through these.

Callers import the package (``from annotation import services``); the modules are where each rule lives.
"""

from __future__ import annotations

from .engine import (
    Served,
    assignment_next,
    assignment_skip,
    assignment_skip_and_next,
    correctable_until,
    judgment_correct,
    judgment_record,
    judgment_record_and_next,
    leases_expire,
)
from .engine.counters import counters_recount
from .judgments_import import JudgmentImportResult, judgments_import
from .pairs import ImportResult, pair_save, pairs_delete, pairs_import
from .priorities import BATCH_PAIRS as PRIORITY_BATCH_PAIRS
from .priorities import pair_priorities_clear, pair_priorities_set, pair_priorities_void
from .projects import PROJECT_ADMIN_SETTINGS, PROJECT_SETTINGS, project_create, project_update
from .raters import project_rater_remove, project_raters_add, rater_create, rater_get_or_create
from .review import pair_keep, pair_leave_out, pair_put_back, pair_quota_raise, pair_review_act

__all__ = [
    "PRIORITY_BATCH_PAIRS",
    "PROJECT_ADMIN_SETTINGS",
    "PROJECT_SETTINGS",
    "ImportResult",
    "JudgmentImportResult",
    "Served",
    "assignment_next",
    "assignment_skip",
    "assignment_skip_and_next",
    "correctable_until",
    "counters_recount",
    "judgment_correct",
    "judgment_record",
    "judgment_record_and_next",
    "judgments_import",
    "leases_expire",
    "pair_keep",
    "pair_leave_out",
    "pair_priorities_clear",
    "pair_priorities_set",
    "pair_priorities_void",
    "pair_put_back",
    "pair_quota_raise",
    "pair_review_act",
    "pair_save",
    "pairs_delete",
    "pairs_import",
    "project_create",
    "project_rater_remove",
    "project_raters_add",
    "project_update",
    "rater_create",
    "rater_get_or_create",
]
