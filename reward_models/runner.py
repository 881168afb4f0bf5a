"""Runs a training run in the worker: the trainer in a child process, its progress on the run's row."""

from __future__ import annotations


def run_training(run_id: int) -> str:
    raise NotImplementedError
