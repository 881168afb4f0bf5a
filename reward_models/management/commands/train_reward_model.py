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
from web.errors import ServiceError

# The settings of the API's request, as options (the other TrainingConfig fields keep their defaults).
OPTIONS = {
    "base_model": (str, "A local model directory or a hub name already in the worker's cache."),
    "epochs": (int, "Passes over the training pairs."),
    "learning_rate": (float, "Peak AdamW learning rate."),
    "batch_size": (int, "Pairs per optimizer step."),
    "max_length": (int, "Tokens per (prompt, response) sequence."),
    "eval_fraction": (float, "Share of pairs held out for evaluation, split by prompt."),
    "seed": (int, "Seeds the split, the batch order and the head's init."),
}


class Command(BaseCommand):
    help = "Queue a reward-model training run of a project's judgments; --wait follows it to the end."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug", help="The project's slug.")
        for name, (kind, help_text) in OPTIONS.items():
            parser.add_argument("--" + name.replace("_", "-"), type=kind, help=help_text)
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Show the run's progress until it ends; exit 1 unless it succeeds.",
        )

    def handle(self, *args: Any, slug: str, wait: bool, **options: Any) -> None:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}.")
        values = {name: options[name] for name in OPTIONS if options.get(name) is not None}
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
