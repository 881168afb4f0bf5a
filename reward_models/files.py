"""Where snapshots and trained models live: under settings.PAIRWISE_RUNS_DIR, which nothing serves.
Rows hold paths relative to it, so the folder can move with its files."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


def runs_root() -> Path:
    return Path(settings.PAIRWISE_RUNS_DIR)


def absolute(relative: str) -> Path:
    """The file or folder a row names; a path that would leave the root (a tampered row) is refused."""
    root = runs_root().resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ValueError(f"{relative!r} is not a path under PAIRWISE_RUNS_DIR")
    return path


def run_dir(run_id: int) -> str:
    """The run's folder (relative): its model under model/, the trainer's log, its config."""
    return f"runs/{run_id}"


def snapshot_file(project_slug: str, name: str) -> str:
    return f"snapshots/{project_slug}/{name}"
