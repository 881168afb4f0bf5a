"""Per-pair model scores: the one home for "scores of a project's pairs by a model". A run's reward model
scores each pair once (a pair's texts never change), batched through the scorer, into PairScore rows that
the review queue reads (and active selection's priority rounds: pair_scores_compute takes any set of
pairs, open ones too).

pair_scoring_start records a scoring of a project's judged pairs by its active model and sends it to the
training queue (the workers that hold the models); pair_scoring_execute is the worker's side, writing its
progress on the row as it goes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError

from annotation.models import Pair, Project
from web.errors import Conflict
from web.statelog import StateLog

from ..models import PairScore, PairScoring, ScoringStatus, TrainingRun
from ..selectors import active_run_id

logger = logging.getLogger("reward_models")
_broker = StateLog(logger)

# Pairs scored, written and counted in the progress at a time: the scorer's own batches are smaller
# (PAIRWISE_SCORE_MAX_RESPONSES responses), this bounds the texts held in memory and the row's writes.
CHUNK_PAIRS = 256
# A queued or running scoring whose row has not moved for this long is lost (its worker died, its message
# was dropped): "Score now" then starts a new one instead of pointing at it.
STALE_AFTER = timedelta(minutes=15)
IN_FLIGHT = (ScoringStatus.QUEUED, ScoringStatus.RUNNING)
ERROR_CHARS = 2000


def one_line(text: str) -> str:
    """An error as a row stores it: one line, at most ERROR_CHARS (runs, scorings, priority rounds)."""
    return " ".join(text.split())[:ERROR_CHARS]


def failure_line(error: Exception) -> str:
    """one_line of what a failed job says: a service error's own sentence, else the exception's type and
    text."""
    return one_line(str(getattr(error, "detail", None) or f"{type(error).__name__}: {error}"))


def probability(reward_difference: float) -> float:
    """sigmoid(reward_difference), without overflow for large differences."""
    if reward_difference >= 0:
        return 1.0 / (1.0 + math.exp(-reward_difference))
    e = math.exp(reward_difference)
    return e / (1.0 + e)


def judged_pairs(*, project: Project) -> QuerySet[Pair, Any]:
    """The project's pairs with at least one judgment: what the review queue needs scored."""
    return Pair.objects.filter(project=project, judgment_count__gt=0)


def pairs_unscored(*, run: TrainingRun, pairs: QuerySet[Pair, Any]) -> QuerySet[Pair, Any]:
    return pairs.exclude(Exists(PairScore.objects.filter(run=run, pair=OuterRef("pk"))))


def pair_scores_compute(
    *,
    run: TrainingRun,
    pairs: QuerySet[Pair, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    now: datetime | None = None,
) -> int:
    """Score with the run's model every pair of ``pairs`` (by default its project's judged pairs) that it
    has not scored yet, in id order, CHUNK_PAIRS at a time; returns how many were scored. ``progress``
    gets (scored so far, to score) after each chunk. Conflict ``model_unavailable`` when the model does not
    load. Safe to run twice at once: a score another process wrote first is kept."""
    from .. import scoring  # loads torch: only here, never at the web process's start

    pairs = judged_pairs(project=run.project) if pairs is None else pairs.filter(project_id=run.project_id)
    ids = list(pairs_unscored(run=run, pairs=pairs).order_by("id").values_list("id", flat=True))
    if progress is not None:
        progress(0, len(ids))
    if not ids:
        return 0
    scorer = scoring.scorer_for(run)
    for start in range(0, len(ids), CHUNK_PAIRS):
        chunk = ids[start : start + CHUNK_PAIRS]
        texts = list(
            Pair.objects.filter(pk__in=chunk)
            .order_by("id")
            .values_list("id", "prompt", "messages", "response_a", "response_b")
        )
        # A conversation is scored as trained and as /score reads it (the encoder's chat template), never
        # as its text rendering in `prompt`.
        prompts = [
            prompt if messages is None else messages for _, prompt, messages, _, _ in texts for _ in (0, 1)
        ]
        responses = [response for *_, a, b in texts for response in (a, b)]
        rewards = scorer.score_pairs(prompts, responses)
        stamp = now or timezone.now()
        scores = []
        for i, (pair_id, *_) in enumerate(texts):
            difference = rewards[2 * i] - rewards[2 * i + 1]
            scores.append(
                PairScore(
                    pair_id=pair_id,
                    run=run,
                    reward_difference=difference,
                    probability_a=probability(difference),
                    computed_at=stamp,
                )
            )
        # Another scoring of the same pairs by the same run (two clicks, two workers) wrote the same scores.
        PairScore.objects.bulk_create(scores, ignore_conflicts=True)
        if progress is not None:
            progress(min(start + CHUNK_PAIRS, len(ids)), len(ids))
    return len(ids)


def pair_scoring_start(*, project: Project, created_by: Any = None) -> PairScoring:
    """Score the project's judged pairs with its active model on a worker of the training queue (sent on
    commit). While a scoring of the project by that model is queued or running (and not lost), that one is
    returned: a second click starts nothing. Conflict ``no_active_model`` without an active model."""
    with transaction.atomic():
        # One start at a time per project: the check for one in flight and the insert see the same rows.
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        active = active_run_id(project=project)
        if active is None:
            raise Conflict(
                f"Project {project.slug!r} has no active model: activate a succeeded training run first.",
                code="no_active_model",
            )
        now = timezone.now()
        in_flight = PairScoring.objects.filter(project=project, status__in=IN_FLIGHT)
        current = in_flight.filter(run_id=active, updated_at__gte=now - STALE_AFTER).first()
        if current is not None:
            return current
        in_flight.filter(updated_at__lt=now - STALE_AFTER).update(
            status=ScoringStatus.FAILED,
            finished_at=now,
            error=f"lost: no progress for {int(STALE_AFTER.total_seconds() // 60)} minutes",
        )
        job = PairScoring.objects.create(
            project=project, run_id=active, created_by=created_by if getattr(created_by, "pk", None) else None
        )
        transaction.on_commit(partial(_send, job.pk))
    return job


def _send(job_id: int) -> None:
    from .. import tasks  # the tasks module imports the services

    try:
        tasks.pair_scoring_execute.apply_async((job_id,))
    except OperationalError as error:
        # The row stays queued; once stale, "Score now" starts another.
        _broker.down("the broker is unreachable (%s): the scoring stays queued", error)
        return
    _broker.up("the broker is reachable again")


def pair_scoring_execute(job_id: int) -> str:
    """The worker's side: claim the queued scoring (of two deliveries, one finds it running), score, and
    write the progress and the end on its row. Returns the status it ended in, or "skipped"."""
    with transaction.atomic():
        job = (
            PairScoring.objects.select_for_update().select_related("run", "project").filter(pk=job_id).first()
        )
        if job is None or job.status != ScoringStatus.QUEUED:
            return "skipped"
        job.status, job.started_at = ScoringStatus.RUNNING, timezone.now()
        job.save(update_fields=["status", "started_at", "updated_at"])

    def progress(done: int, total: int) -> None:
        PairScoring.objects.filter(pk=job_id).update(done=done, total=total, updated_at=timezone.now())

    try:
        pair_scores_compute(run=job.run, progress=progress)
    except Exception as error:  # any failure is the scoring's outcome, shown on the queue's page
        logger.exception("scoring %s failed", job_id)
        _end(job_id, ScoringStatus.FAILED, error=failure_line(error))
        return ScoringStatus.FAILED
    _end(job_id, ScoringStatus.SUCCEEDED)
    return ScoringStatus.SUCCEEDED


def _end(job_id: int, status: str, *, error: str = "") -> None:
    now = timezone.now()
    PairScoring.objects.filter(pk=job_id).update(status=status, error=error, finished_at=now, updated_at=now)
