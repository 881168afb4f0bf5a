"""`manage.py train_reward_model SLUG [--base-model ...] [--wait]`: queue a training run of the project's
judgments, as POST /api/v1/training-runs/ does; with --wait, follow it with a progress bar until it ends."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import Project
from reward_models import services
from reward_models.models import RunStatus, TrainingRun
from rm_training.cli import add_config_options
from web.errors import ServiceError

# The settings a run's request may hold, as options named, typed, bounded and explained as the trainer's
# CLI has them (TrainingConfig judges the values); the other TrainingConfig fields are the worker's.
OPTIONS = services.user_settings()


class Command(BaseCommand):
    help = "Queue a reward-model training run of a project's judgments; --wait follows it to the end."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug", help="The project's slug.")
        add_config_options(parser, OPTIONS)
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Show the run's progress until it ends; exit 1 unless it succeeds.",
        )

    def handle(self, *args: Any, slug: str, wait: bool, **options: Any) -> None:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}.")
        names = [spec["name"] for spec in OPTIONS]
        values = {name: options[name] for name in names if options.get(name) is not None}
        try:
            run = services.training_run_create(project=project, config=values)
        except ServiceError as error:
            details = getattr(error, "errors", [])
            lines = [f"--{e['field'].replace('_', '-')}: {e['message']}" for e in details]
            raise CommandError("; ".join(lines) or error.detail) from None
        self.stdout.write(f"run {run.pk} queued for {slug} (on the training queue)")
        if wait:
            self._follow(run.pk)

    def _follow(self, run_id: int) -> None:
        bar = tqdm(total=1.0, bar_format="{l_bar}{bar}| {postfix}", file=sys.stderr, disable=None)
        try:
            while True:
                run = TrainingRun.objects.get(pk=run_id)
                bar.n = run.progress
                current = run.current or {}
                bar.set_postfix_str(
                    f"{run.status}"
                    + (f", step {current['step']}/{current['total_steps']}" if current.get("step") else "")
                    + (f", loss {current['loss']:.4f}" if isinstance(current.get("loss"), float) else "")
                )
                if run.is_finished:
                    break
                time.sleep(1)
        except KeyboardInterrupt:
            bar.close()
            raise CommandError(
                f"stopped following run {run_id}; it goes on (cancel it with POST /api/v1/training-runs/"
                f"{run_id}/cancel/ or in the admin)"
            ) from None
        bar.close()
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"run {run_id} {run.status}" + (f": {run.error}" if run.error else ""))
        accuracy = run.metrics.get("eval_accuracy")
        shown = f"{accuracy:.4f}" if isinstance(accuracy, float) else "n/a (nothing held out)"
        self.stdout.write(f"run {run_id} succeeded: eval_accuracy {shown}")
