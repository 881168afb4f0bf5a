"""Pairwise's reward-model trainer: Bradley-Terry on pairwise human preferences, without Django.

This package's ``__init__`` stays light on purpose: the web process imports ``rm_training.config``
to validate and store a run's settings, and must not pay for (or fork after) importing torch.
Training: :func:`rm_training.train.train`. Scoring: :class:`rm_training.scoring.RewardScorer`.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
