"""Scoring with a project's active model in the web process: loaded lazily (torch is imported only then),
kept until another model is activated, responses scored in one batched forward pass."""

from __future__ import annotations

from typing import Any

from .models import TrainingRun


def check_saved_model(run: TrainingRun) -> None:
    """Load the run's saved directory and score the pairs it recorded at the end of training; Conflict
    when it does not load or scores differently (a reward head lost on save)."""
    raise NotImplementedError


def score(*, project: Any, prompt: str, responses: list[str]) -> tuple[int, list[float]]:
    raise NotImplementedError
