"""What beat does for reward models: snapshot every project with new judgments, and start the runs that
projects' auto-train policies ask for."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from annotation.models import Judgment, Project
from web.errors import Conflict

from ..models import AutoTrainPolicy, DatasetSnapshot, RunStatus, SnapshotReason, TrainingRun
from .runs import runs_lost, training_run_create
from .snapshots import snapshot_create


def snapshots_export_all() -> list[DatasetSnapshot]:
    """A snapshot of every judgment of each project that has judgments newer than its last snapshot."""
    made = []
    for project in Project.objects.filter(judgments__isnull=False).distinct().order_by("pk"):
        snapshot = snapshot_create(project=project, reason=SnapshotReason.PERIODIC, only_if_new=True)
        if snapshot is not None:
            made.append(snapshot)
    return made


def auto_train_check() -> list[TrainingRun]:
    """Start a run for each enabled policy that is due, unless its project has a run in flight: running, or
    queued with its message on the broker. A queued run whose message is lost (runs_lost) holds nothing
    back: it is sent again, but may never be taken.

    Due: ``after_new_judgments`` judgments arrived since the policy last started a run, or ``every_hours``
    passed since then and at least one judgment arrived. Before its first run every judgment is new.
    """
    started = []
    now = timezone.now()
    lost: list[int] | None = None  # asked of the broker only when some project has a run queued or running
    for policy in AutoTrainPolicy.objects.filter(enabled=True).select_related("project").order_by("pk"):
        with transaction.atomic():
            locked = AutoTrainPolicy.objects.select_for_update(skip_locked=True).filter(pk=policy.pk).first()
            if locked is None:
                continue
            project = policy.project
            runs = TrainingRun.objects.filter(project=project)
            in_flight = runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
            if in_flight.exists():
                if lost is None:
                    lost = [run.pk for run in runs_lost()]
                if in_flight.exclude(pk__in=lost).exists():
                    continue
            # New by id, not by time: imported judgments keep the time they were made elsewhere.
            judgments = Judgment.objects.filter(project=project, id__gt=locked.last_judgment_id or 0)
            summary = judgments.aggregate(count=Count("id"), last=Max("id"))
            new_count = summary["count"]
            due_by_count = locked.after_new_judgments is not None and new_count >= locked.after_new_judgments
            due_by_time = (
                locked.every_hours is not None
                and new_count > 0
                and (
                    locked.last_started_at is None
                    or now - locked.last_started_at >= timedelta(hours=locked.every_hours)
                )
            )
            if not (due_by_count or due_by_time):
                continue
            try:
                started.append(training_run_create(project=project, config=locked.config))
            except Conflict:  # no usable pairs yet (all ties, say): due again at the next check
                continue
            locked.last_started_at = now
            locked.last_judgment_id = summary["last"]
            locked.save(update_fields=["last_started_at", "last_judgment_id"])
    return started
