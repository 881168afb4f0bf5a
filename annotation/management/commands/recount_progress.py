"""Count every project's progress counters again from its rows, and repair those that differ."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation import services
from annotation.models import Project


class Command(BaseCommand):
    help = (
        "Recount the counters behind progress and the agreement report's cache check (open pairs, each "
        "rater's judgments and finished open pairs) from the rows, and store them where they differ."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slugs", nargs="*", help="Projects to recount (all when none is named).")

    def handle(self, *args: Any, **options: Any) -> None:
        projects = Project.objects.order_by("slug")
        if options["slugs"]:
            projects = projects.filter(slug__in=options["slugs"])
            missing = set(options["slugs"]) - set(projects.values_list("slug", flat=True))
            if missing:
                raise CommandError(f"No such project: {', '.join(sorted(missing))}")
        for project in projects:
            recount = services.counters_recount(project=project)
            self.stdout.write(f"{project.slug}: {'repaired' if recount.repaired else 'ok'}")
