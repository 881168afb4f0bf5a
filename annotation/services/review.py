"""The review queue's actions on a pair (reward_models' review queue calls them; the engine's rules stay in
the engine): ask for more votes, leave the pair out of training (and put it back), keep it as it is.
Each is recorded as a PairReviewAction (who, when, why); nothing is deleted.

pair_quota_raise is the one place a pair's quota changes: a pair whose judgments were complete is open
again afterwards, so whatever counts a project's open pairs must follow it here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import (
    MAX_EXTRA_JUDGMENTS,
    MAX_REVIEW_REASON,
    Pair,
    PairReviewAction,
    Project,
    ReviewAction,
)
from rm_training.jsonl import text_problems
from web.errors import Conflict, Invalid, NotFound

from .engine.counters import pairs_counted, project_data_changed


def _pair_locked(project: Project, pair_id: int) -> Pair:
    """The project's regular pair, its row locked: a judgment on it waits, so the count it is recorded with
    is the one the action saw."""
    pair = Pair.objects.select_for_update().filter(project=project, pk=pair_id).first()
    if pair is None:
        raise NotFound(f"No pair {pair_id} in project {project.slug!r}.")
    if pair.gold is not None:
        raise Conflict(
            "Gold pairs are not reviewed: their answer is the gold one, and every rater sees them.",
            code="gold_pair",
        )
    return pair


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise Invalid("A reason is required.", errors=[{"field": "reason", "message": "Required."}])
    if len(reason) > MAX_REVIEW_REASON:
        message = f"At most {MAX_REVIEW_REASON} characters."
        raise Invalid("The reason is too long.", errors=[{"field": "reason", "message": message}])
    # A NUL cannot be stored in a PostgreSQL text column: refused here, for the admin form as for the API.
    for _path, problem in text_problems(reason):
        raise Invalid("The reason cannot be stored.", errors=[{"field": "reason", "message": problem}])
    return reason


def _record(
    *, pair: Pair, action: ReviewAction, by: Any, reason: str, now: datetime | None, extra: int | None = None
) -> PairReviewAction:
    return PairReviewAction.objects.create(
        project_id=pair.project_id,
        pair=pair,
        action=action,
        extra_judgments=extra,
        reason=reason,
        by=by,
        judgment_count=pair.judgment_count,
        created_at=now or timezone.now(),
    )


def pair_quota_raise(
    *, project: Project, pair_id: int, k: int, by: Any, reason: str, now: datetime | None = None
) -> PairReviewAction:
    """Ask for k more judgments of the pair: its quota becomes judgments_per_pair + extra_judgments, and
    the engine serves it to k more raters who have not seen it, before any other pair. A pair whose
    judgments were complete is open again (progress counts it)."""
    reason = _reason(reason)
    with transaction.atomic():
        pair = _pair_locked(project, pair_id)
        if pair.left_out:
            # Its votes would train nothing: raters' time spent on a pair no model reads.
            raise Conflict(
                f"Pair {pair.pk} is left out of training: more votes on it would train nothing.",
                code="left_out",
            )
        room = MAX_EXTRA_JUDGMENTS - pair.extra_judgments
        if not 1 <= k <= room:
            message = (
                f"Must be from 1 to {room}: a pair takes at most {MAX_EXTRA_JUDGMENTS} extra judgments "
                f"and this one has {pair.extra_judgments}."
                if room
                else f"This pair already has the most extra judgments ({MAX_EXTRA_JUDGMENTS})."
            )
            raise Invalid("Too many extra judgments.", errors=[{"field": "k", "message": message}])
        # Relative to what the pair asks for now, whatever asked for it before (the row is locked). A full
        # pair opens again: out of the progress counters before, counted in again after.
        with pairs_counted(project=project, pair_ids=[pair.pk]):
            Pair.objects.filter(pk=pair.pk).update(extra_judgments=F("extra_judgments") + k)
        pair.extra_judgments += k
        return _record(pair=pair, action=ReviewAction.MORE_VOTES, by=by, reason=reason, now=now, extra=k)


def pair_leave_out(
    *, project: Project, pair_id: int, by: Any, reason: str, now: datetime | None = None
) -> PairReviewAction:
    """Leave the pair out of training: its judgments stay (the judgments export marks them left_out), the
    preferences export and every training from now on leave it out. Leaving out a pair already left out
    is refused (409), so the record says once who did it."""
    reason = _reason(reason)
    with transaction.atomic():
        pair = _pair_locked(project, pair_id)
        if pair.left_out:
            raise Conflict(f"Pair {pair.pk} is already left out of training.", code="already_left_out")
        Pair.objects.filter(pk=pair.pk).update(left_out=True)
        pair.left_out = True
        project_data_changed(project_id=project.pk)  # the exports and snapshots change
        return _record(pair=pair, action=ReviewAction.LEAVE_OUT, by=by, reason=reason, now=now)


def pair_put_back(
    *, project: Project, pair_id: int, by: Any, reason: str, now: datetime | None = None
) -> PairReviewAction:
    """Undo pair_leave_out: the pair trains again from the next run on (a slip at 2 a.m. is not final).
    A pair that is not left out is refused (409). The pair does not come back to the review queue: a
    reviewer has decided on it."""
    reason = _reason(reason)
    with transaction.atomic():
        pair = _pair_locked(project, pair_id)
        if not pair.left_out:
            raise Conflict(f"Pair {pair.pk} is not left out of training.", code="not_left_out")
        Pair.objects.filter(pk=pair.pk).update(left_out=False)
        pair.left_out = False
        project_data_changed(project_id=project.pk)
        return _record(pair=pair, action=ReviewAction.PUT_BACK, by=by, reason=reason, now=now)


def pair_keep(
    *, project: Project, pair_id: int, by: Any, reason: str, now: datetime | None = None
) -> PairReviewAction:
    """Keep the pair as it is: nothing changes but the record, which takes it off the review queue."""
    reason = _reason(reason)
    with transaction.atomic():
        pair = _pair_locked(project, pair_id)
        return _record(pair=pair, action=ReviewAction.KEEP, by=by, reason=reason, now=now)


def pair_review_act(
    *,
    project: Project,
    pair_id: int,
    action: str,
    by: Any,
    reason: str,
    k: int | None = None,
    now: datetime | None = None,
) -> PairReviewAction:
    """One of the actions above by its name (ReviewAction), as the API and the admin page send it; ``k``
    with more_votes only."""
    if action == ReviewAction.MORE_VOTES:
        if k is None:
            raise Invalid(
                "How many more votes?", errors=[{"field": "k", "message": "Required with more_votes."}]
            )
        return pair_quota_raise(project=project, pair_id=pair_id, k=k, by=by, reason=reason, now=now)
    if k is not None:
        raise Invalid("Only more_votes takes k.", errors=[{"field": "k", "message": "Only with more_votes."}])
    if action == ReviewAction.LEAVE_OUT:
        return pair_leave_out(project=project, pair_id=pair_id, by=by, reason=reason, now=now)
    if action == ReviewAction.KEEP:
        return pair_keep(project=project, pair_id=pair_id, by=by, reason=reason, now=now)
    if action == ReviewAction.PUT_BACK:
        return pair_put_back(project=project, pair_id=pair_id, by=by, reason=reason, now=now)
    choices = ", ".join(ReviewAction.values)
    raise Invalid(
        f"Unknown action {action!r}.", errors=[{"field": "action", "message": f"One of {choices}."}]
    )
