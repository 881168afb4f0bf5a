"""Reads of the reward_models app: run lists and details for the API and the admin pages."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from annotation.models import Project

from .models import ActiveModel, TrainingRun


def training_runs(*, project: Project | None = None) -> QuerySet[TrainingRun, Any]:
    """Runs, newest first, with their project and snapshot (one query)."""
    runs = TrainingRun.objects.select_related("project", "snapshot")
    return runs if project is None else runs.filter(project=project)


def active_run_id(*, project: Project) -> int | None:
    return ActiveModel.objects.filter(project=project).values_list("run_id", flat=True).first()


def active_run(*, project: Project) -> tuple[int, str] | None:
    """(run id, the reason it was activated without a held-out evaluation, or "") of the project's model."""
    return ActiveModel.objects.filter(project=project).values_list("run_id", "forced_reason").first()
