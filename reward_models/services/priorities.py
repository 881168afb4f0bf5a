"""The pairs' priorities under uncertainty selection: the active model's uncertainty of each open pair,
written on the pairs through annotation's pair_priorities_set, which the engine's claim orders by.

A round (PriorityRound) scores with the project's active run the open regular pairs that carry no
priority yet, through the per-pair model scores (pair_scores_compute: a pair the run scored before, for the
review queue say, is not scored again), and writes priority = 1 - |2 P(a preferred) - 1| for them. Beat
starts one every few minutes for each project that has such pairs (priorities_refresh_all), and an
activation starts one at once.

One model's priorities at a time. While the pairs carry another run's priorities (the active model
changed), a round scores every open regular pair, then takes the old priorities' stamp off (the engine
serves the default order from then on), clears them and writes the new ones, batch by batch so that no
claim waits long for a batch's rows, and stamps them once all are written. Without an active model, or
once the project leaves uncertainty selection, the stamp is taken off and the engine serves the default
order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError

from annotation import services as annotation_services
from annotation.models import Pair, Project, Selection
from web.errors import ServiceError
from web.statelog import StateLog

from ..models import PairScore, PriorityRound, PriorityStatus, TrainingRun
from ..selectors import active_run_id
from .pair_scores import STALE_AFTER, failure_line, pair_scores_compute

logger = logging.getLogger("reward_models")
_broker = StateLog(logger)

# A running round whose row has not moved for STALE_AFTER (the scorings' rule) is lost (its worker died):
# the row moves with every batch of pairs scored. A queued one as old is lost only when the training queue
# holds no message at all (its message was dropped): a round waiting behind an hours-long training run is
# not, and is not sent again every quarter of an hour. The next refresh starts another in place of a lost
# one.
IN_FLIGHT = (PriorityStatus.QUEUED, PriorityStatus.RUNNING)
# The project's row lock (priorities_refresh, _write) is FOR NO KEY UPDATE, never FOR UPDATE: every row
# inserted that references the project (an assignment, a judgment, a counter) takes KEY SHARE on it, which
# FOR UPDATE refuses. A round's write holds the lock while it updates the pairs; held FOR UPDATE, a judgment
# that had locked one of them and then inserted its row waited for the write, which waited for its pair: a
# deadlock that PostgreSQL broke by failing one side, often the rater's judgment.


def priority(probability_a: float) -> float:
    """How unsure the model is of a pair: 1 at P(a preferred) = 0.5, down to 0 where it is certain."""
    return min(1.0, max(0.0, 1.0 - abs(2.0 * probability_a - 1.0)))


def open_regular_pairs(project: Project) -> QuerySet[Pair, Any]:
    """The pairs the engine serves by priority: regular (not gold) and below their quota, the project's
    judgments_per_pair plus the extra judgments a reviewer asked for (the engine's open rule)."""
    quota = project.judgments_per_pair + F("extra_judgments")
    return Pair.objects.filter(project=project, gold__isnull=True, judgment_count__lt=quota)


def priorities_run_id(project: Project) -> int | None:
    """The run whose priorities the project's pairs carry: that of its latest succeeded round, while the
    project's priorities_at is set (None when they were cleared or never written)."""
    if project.priorities_at is None:
        return None
    rounds = PriorityRound.objects.filter(project=project, status=PriorityStatus.SUCCEEDED)
    return rounds.order_by("-finished_at", "-id").values_list("run_id", flat=True).first()


def priorities_refresh(*, project: Project, send: bool = True) -> PriorityRound | None:
    """Bring one project's priorities in line with its selection and active model. Under uncertainty
    selection with an active model: start a round (sent on commit) when the pairs carry another run's
    priorities, or some open regular pair carries none; returns it, or the round of that model already in
    flight, or None when there is nothing new. Otherwise (no active model, another selection): clear the
    priorities, and return None. ``send=False`` (the command, which runs the round itself): the round is
    not sent to the training queue."""
    with transaction.atomic():
        # One refresh at a time per project: the check for a round in flight and the insert see the same
        # rows (beat and an activation may come together). FOR NO KEY UPDATE: see the note at the top.
        locked = Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        if locked is None:
            return None
        active = active_run_id(project=locked)
        if locked.selection != Selection.UNCERTAINTY or active is None:
            if locked.priorities_at is not None:
                # The stamp only (the engine stops at once); the values wait for a round that replaces
                # them: a clear of every pair here would hold them all under this transaction.
                annotation_services.pair_priorities_void(project=locked)
            return None
        in_flight = PriorityRound.objects.filter(project=locked, status__in=IN_FLIGHT)
        _fail_lost(in_flight)
        current = in_flight.filter(run_id=active).first()
        if current is not None:
            return current
        if (
            priorities_run_id(locked) == active
            and not open_regular_pairs(locked).filter(priority__isnull=True).exists()
        ):
            return None
        job = PriorityRound.objects.create(project=locked, run_id=active)
        if send:
            transaction.on_commit(partial(_send, job.pk))
    return job


def _fail_lost(in_flight: QuerySet[PriorityRound, Any]) -> None:
    """Fail the lost rounds among ``in_flight`` (STALE_AFTER): running ones whose row stopped moving,
    queued ones as old while the training queue holds no message (asked of the broker only then; while
    it is unreachable, none is lost: nothing could be sent anyway)."""
    from .runs import training_messages_waiting  # runs starts a refresh on activation

    now = timezone.now()
    old = in_flight.filter(updated_at__lt=now - STALE_AFTER)
    lost = Q(status=PriorityStatus.RUNNING)
    if old.filter(status=PriorityStatus.QUEUED).exists() and training_messages_waiting() == 0:
        lost |= Q(status=PriorityStatus.QUEUED)
    minutes = int(STALE_AFTER.total_seconds() // 60)
    old.filter(lost).update(
        status=PriorityStatus.FAILED,
        finished_at=now,
        updated_at=now,
        error=f"lost: no progress for {minutes} minutes (running: its worker stopped; queued: its message "
        "is gone from the training queue)",
    )


def priorities_refresh_all() -> list[PriorityRound]:
    """Beat's round over the projects: priorities_refresh of each project under uncertainty selection and
    of each that still carries priorities. Returns the rounds started or in flight."""
    projects = Project.objects.filter(Q(selection=Selection.UNCERTAINTY) | Q(priorities_at__isnull=False))
    rounds = []
    for project in projects.order_by("pk"):
        job = priorities_refresh(project=project)
        if job is not None:
            rounds.append(job)
    return rounds


def _send(round_id: int) -> None:
    from .. import tasks  # the tasks module imports the services

    try:
        tasks.priority_round_execute.apply_async((round_id,))
    except OperationalError as error:
        # The row stays queued; once stale, the next refresh starts another.
        _broker.down("the broker is unreachable (%s): the priority round stays queued", error)
        return
    _broker.up("the broker is reachable again")


def _is_current(project: Project, run_id: int) -> bool:
    return project.selection == Selection.UNCERTAINTY and active_run_id(project=project) == run_id


def priority_round_execute(round_id: int, *, report: Callable[[int, int], None] | None = None) -> str:
    """The worker's side (the command's too): claim the queued round (of two deliveries, one finds it
    running), score the pairs its run has not scored, write their priorities, and record the end on its
    row. Returns the status it ended in, or "skipped". A round whose run is no longer the project's
    active model, or whose project left uncertainty selection, ends superseded and writes nothing.
    ``report`` gets (scored so far, to score) after each batch, as the row does."""
    with transaction.atomic():
        job = (
            PriorityRound.objects.select_for_update()
            .select_related("run", "project")
            .filter(pk=round_id)
            .first()
        )
        if job is None or job.status != PriorityStatus.QUEUED:
            return "skipped"
        job.status, job.started_at = PriorityStatus.RUNNING, timezone.now()
        job.save(update_fields=["status", "started_at", "updated_at"])
    project, run = job.project, job.run
    if not _is_current(project, run.pk):
        return _end(round_id, PriorityStatus.SUPERSEDED)

    def progress(done: int, total: int) -> None:
        PriorityRound.objects.filter(pk=round_id).update(done=done, total=total, updated_at=timezone.now())
        if report is not None:
            report(done, total)

    try:
        replacing = priorities_run_id(project) != run.pk
        pair_scores_compute(run=run, pairs=_to_write(project, replacing=replacing), progress=progress)
        return _write(round_id, project=project, run=run)
    except Exception as error:  # any failure is the round's outcome, shown on the dashboard
        message = failure_line(error)
        if isinstance(error, ServiceError):  # a stated reason (the model does not load): no traceback
            logger.warning("priority round %s failed: %s", round_id, message)
        else:
            logger.exception("priority round %s failed", round_id)
        return _end(round_id, PriorityStatus.FAILED, error=message)


def _to_write(project: Project, *, replacing: bool) -> QuerySet[Pair, Any]:
    """The pairs a round writes: every open regular pair when it replaces the priorities, else those that
    carry none."""
    pairs = open_regular_pairs(project)
    return pairs if replacing else pairs.filter(priority__isnull=True)


def _write(round_id: int, *, project: Project, run: TrainingRun) -> str:
    """Write the scored pairs' priorities, BATCH_PAIRS per transaction, each under the project's row lock
    with the run checked still current (priorities_refresh's lock: a model change stops the round between
    two batches), so that no claim waits long for the pairs a batch holds. Replacing another run's
    priorities: the stamp goes first (the engine serves the default order meanwhile), then the old values
    (batch by batch), then the new ones, stamped once all are written: the engine never orders by two
    models' priorities, nor by a half-written set of the new one's."""
    with transaction.atomic():
        locked = Project.objects.select_for_update(no_key=True).get(pk=project.pk)
        if not _is_current(locked, run.pk):
            return _end(round_id, PriorityStatus.SUPERSEDED)
        replacing = priorities_run_id(locked) != run.pk
        if replacing:
            annotation_services.pair_priorities_void(project=locked)
    if replacing:
        annotation_services.pair_priorities_clear(project=project)
    scores = PairScore.objects.filter(run=run, pair__in=_to_write(project, replacing=False))
    items = sorted(scores.values_list("pair_id", "probability_a"))
    written, now = 0, timezone.now()
    for start in range(0, max(len(items), 1), annotation_services.PRIORITY_BATCH_PAIRS):
        batch = {
            pair_id: priority(p)
            for pair_id, p in items[start : start + annotation_services.PRIORITY_BATCH_PAIRS]
        }
        with transaction.atomic():
            locked = Project.objects.select_for_update(no_key=True).get(pk=project.pk)
            if not _is_current(locked, run.pk):
                return _end(round_id, PriorityStatus.SUPERSEDED)
            last = start + annotation_services.PRIORITY_BATCH_PAIRS >= len(items)
            written += annotation_services.pair_priorities_set(
                project=locked, priorities=batch, now=now, stamp=last or not replacing
            )
            if last:
                end = {"finished_at": now, "updated_at": now}
                PriorityRound.objects.filter(pk=round_id).update(
                    status=PriorityStatus.SUCCEEDED, replaced=replacing, written=written, **end
                )
    return PriorityStatus.SUCCEEDED


def _end(round_id: int, status: str, *, error: str = "") -> str:
    now = timezone.now()
    rows = PriorityRound.objects.filter(pk=round_id)
    rows.update(status=status, error=error, finished_at=now, updated_at=now)
    return status
