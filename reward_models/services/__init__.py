"""Writes of the reward_models app; callers import the package (``from reward_models import services``)."""

from __future__ import annotations

from .agreement import snapshot_human_agreement
from .pair_scores import pair_scores_compute, pair_scoring_execute, pair_scoring_start
from .periodic import auto_train_check, snapshots_export_all
from .priorities import priorities_refresh, priorities_refresh_all, priority_round_execute
from .runs import (
    FORCE_REASON_MAX,
    held_out_missing,
    runs_reap,
    runs_resend,
    training_config_build,
    training_run_activate,
    training_run_cancel,
    training_run_create,
    user_settings,
)
from .snapshots import snapshot_create, snapshot_filters

__all__ = [
    "FORCE_REASON_MAX",
    "auto_train_check",
    "held_out_missing",
    "pair_scores_compute",
    "pair_scoring_execute",
    "pair_scoring_start",
    "priorities_refresh",
    "priorities_refresh_all",
    "priority_round_execute",
    "runs_reap",
    "runs_resend",
    "snapshot_create",
    "snapshot_filters",
    "snapshot_human_agreement",
    "snapshots_export_all",
    "training_config_build",
    "training_run_activate",
    "training_run_cancel",
    "training_run_create",
    "user_settings",
]
