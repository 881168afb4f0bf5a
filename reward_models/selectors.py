"""Reads of the reward_models app: run lists and details for the API and the admin pages; the review
queue."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    FilteredRelation,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)

from annotation.models import Choice, Judgment, Pair, PairReviewAction, Project, ReviewAction

from .models import ActiveModel, PairScoring, TrainingRun


def training_runs(*, project: Project | None = None) -> QuerySet[TrainingRun, Any]:
    """Runs, newest first, with their project and snapshot (one query)."""
    runs = TrainingRun.objects.select_related("project", "snapshot")
    return runs if project is None else runs.filter(project=project)


def active_run(*, project: Project) -> tuple[int, str] | None:
    """(run id, the reason it was activated without a held-out evaluation, or "") of the project's model."""
    return ActiveModel.objects.filter(project=project).values_list("run_id", "forced_reason").first()


def active_run_id(*, project: Project) -> int | None:
    active = active_run(project=project)
    return active[0] if active is not None else None


# The review queue


def review_queue(*, project: Project, run_id: int) -> QuerySet[Pair, Any]:
    """The project's regular judged pairs that the run's model scored, whose votes have a human majority
    for a or b, ranked where the model's probability for that majority is lowest (then by id), each with
    its votes (votes_a, votes_b, votes_tie), majority, margin (majority's votes less the other side's),
    probability (the model's, for the majority) and reward_difference (the model's, majority side less
    the other). One query.

    The majority is rm_training.votes' rule (Votes.majority: strictly more votes than each other choice),
    written in SQL here so that the database ranks and pages (a test holds the two equal); pairs without
    one (a split, a tie on top) are not in the queue: they train nothing either. Left out: pairs left out
    of training, kept as they are, or put back into training by a reviewer, and pairs still waiting for
    the votes a reviewer asked for; gold pairs (their answer is the gold one).
    """
    scored = FilteredRelation("model_scores", condition=Q(model_scores__run_id=run_id))
    # Kept, or put back into training after being left out: a reviewer decided the pair trains as it is.
    kept = PairReviewAction.objects.filter(
        pair=OuterRef("pk"), action__in=[ReviewAction.KEEP, ReviewAction.PUT_BACK]
    )
    a_wins = Q(votes_a__gt=F("votes_b")) & Q(votes_a__gt=F("votes_tie"))
    b_wins = Q(votes_b__gt=F("votes_a")) & Q(votes_b__gt=F("votes_tie"))
    return (
        Pair.objects.filter(project=project, gold__isnull=True, left_out=False)
        .annotate(score=scored)
        .filter(score__isnull=False)
        .exclude(extra_judgments__gt=0, judgment_count__lt=project.judgments_per_pair + F("extra_judgments"))
        .exclude(Exists(kept))
        .annotate(
            probability_a=F("score__probability_a"),
            difference_a=F("score__reward_difference"),
            votes_a=Count("judgments", filter=Q(judgments__choice=Choice.A)),
            votes_b=Count("judgments", filter=Q(judgments__choice=Choice.B)),
            votes_tie=Count("judgments", filter=Q(judgments__choice=Choice.TIE)),
        )
        .annotate(
            majority=Case(When(a_wins, then=Value("a")), When(b_wins, then=Value("b")), default=None),
            probability=Case(
                When(a_wins, then=F("probability_a")),
                When(b_wins, then=1.0 - F("probability_a")),
                default=None,
                output_field=FloatField(),
            ),
            margin=Case(
                When(a_wins, then=F("votes_a") - F("votes_b")),
                default=F("votes_b") - F("votes_a"),
                output_field=IntegerField(),
            ),
            reward_difference=Case(
                When(a_wins, then=F("difference_a")), default=-F("difference_a"), output_field=FloatField()
            ),
        )
        .filter(probability__isnull=False)
        .defer("metadata", "messages")
        .order_by("probability", "id")
    )


def review_votes(pair_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """Each pair's judgments in id order, as {"rater" (the pseudonym, never a name), "choice", "strength",
    "created_at"}: one query for a page of the queue."""
    rows: dict[int, list[dict[str, Any]]] = {pair_id: [] for pair_id in pair_ids}
    judgments = (
        Judgment.objects.filter(pair_id__in=list(rows))
        .order_by("id")
        .values_list("pair_id", "rater__pseudonym", "choice", "strength", "created_at")
    )
    for pair_id, pseudonym, choice, strength, created_at in judgments:
        rows[pair_id].append(
            {"rater": pseudonym, "choice": choice, "strength": strength, "created_at": created_at}
        )
    return rows


# The review page lists at most this many left-out pairs (the latest first), with their total.
LEFT_OUT_SHOWN = 100


def left_out_pairs(*, project: Project) -> tuple[int, list[Any]]:
    """The project's pairs left out of training, how many, and the latest LEFT_OUT_SHOWN of them with the
    leave-out that did it (left_out_reason, left_out_by, left_out_at): the review page's list, from which a
    reviewer puts a pair back. Two queries."""
    latest = PairReviewAction.objects.filter(pair=OuterRef("pk"), action=ReviewAction.LEAVE_OUT).order_by(
        "-id"
    )
    pairs = Pair.objects.filter(project=project, left_out=True)
    shown = list(
        pairs.annotate(
            left_out_reason=Subquery(latest.values("reason")[:1]),
            left_out_by=Subquery(latest.values("by__username")[:1]),
            left_out_at=Subquery(latest.values("created_at")[:1]),
        )
        .only("id", "external_id", "prompt")
        .order_by("-left_out_at", "-id")[:LEFT_OUT_SHOWN]
    )
    return pairs.count(), shown


def latest_scoring(*, project: Project) -> PairScoring | None:
    """The project's latest scoring of its pairs (the review page's progress), with its run."""
    return PairScoring.objects.filter(project=project).order_by("-created_at", "-id").first()
