"""Reward models as the product sees them: dataset snapshots, training runs, the active model of a project,
and scoring (DESIGN.md). Only ``tasks`` and ``runner`` start the trainer; ``scoring`` imports torch lazily."""
