"""`manage.py score_priorities SLUG [--clear]`: bring a project's pair priorities up to date now, in this
process, as beat's round would on a worker (uncertainty selection); --clear takes them off."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation import services as annotation_services
from annotation.models import Project, Selection
from reward_models import services
from reward_models.models import PriorityRound, PriorityStatus
from reward_models.selectors import active_run_id
from reward_models.services.priorities import priorities_run_id


class Command(BaseCommand):
    help = (
        "Score the open pairs without a priority with the project's active model and write their "
        "priorities (uncertainty selection), here and now; --clear takes every priority off."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug", help="The project's slug.")
        parser.add_argument(
            "--clear",
            action="store_true",
            help="Take the priorities off: the engine serves the default order until the next round writes "
            "them (beat's, within 5 minutes, while the project is under uncertainty with an active model).",
        )

    def handle(self, *args: Any, slug: str, clear: bool, **options: Any) -> None:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}.")
        if clear:
            cleared = annotation_services.pair_priorities_clear(project=project)
            self.stdout.write(f"{slug}: {cleared} priorities cleared; pairs are served in the default order")
            return
        job = services.priorities_refresh(project=project, send=False)
        project.refresh_from_db()
        if job is None:
            self.stdout.write(self._state(project))
            return
        if job.status != PriorityStatus.QUEUED:
            self.stdout.write(
                f"{slug}: round {job.pk} of run {job.run_id} is {job.status} ({job.done} of {job.total} "
                "pairs scored); nothing started"
            )
            return
        bar = tqdm(total=0, unit="pair", file=sys.stderr, disable=None)

        def report(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        status = services.priority_round_execute(job.pk, report=report)
        bar.close()
        job = PriorityRound.objects.get(pk=job.pk)
        if status != PriorityStatus.SUCCEEDED:
            raise CommandError(f"round {job.pk} {status}" + (f": {job.error}" if job.error else ""))
        self.stdout.write(
            f"{slug}: run {job.run_id} scored {job.total} pairs and wrote {job.written} priorities"
            + (" (replacing every earlier one)" if job.replaced else "")
        )

    def _state(self, project: Project) -> str:
        if project.selection != Selection.UNCERTAINTY:
            return f"{project.slug}: selection is {project.selection}; no priorities are used (none kept)"
        if active_run_id(project=project) is None:
            return f"{project.slug}: no active model; pairs are served in the default order (no priorities)"
        return (
            f"{project.slug}: up to date: every open pair carries run {priorities_run_id(project)}'s "
            f"priority (written {project.priorities_at:%Y-%m-%d %H:%M:%S} UTC)"
        )
