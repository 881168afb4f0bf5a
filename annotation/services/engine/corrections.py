"""Taking back a slip: a rater corrects their own judgment within the project's correction window, and the
earlier answer is kept as a JudgmentRevision.

A correction changes the answer in place and nothing else: the assignment stays judged and the pair's
count stays as it was, so the judgment never gives up its place on the pair. Other raters racing for the
pair meanwhile see it full exactly as before, and the engine's quota, the exports and the agreement figures
see one judgment per rater and pair, the latest answer, at every moment. "Undo" on the rating page is this
service's form: the last judgment served again for editing, not deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from annotation.models import Judgment, JudgmentRevision, Project, ShownChoice
from annotation.selectors import can_rate_sql
from web.errors import Conflict, Forbidden, Invalid, NotFound

from .counters import project_data_changed
from .rules import judgment_errors


def correctable_until(*, judgment: Judgment, project: Project) -> datetime | None:
    """Until when the judgment's rater may correct it: its first answer's time plus the project's window
    (a correction does not extend it). None when it never may: corrections off, or an imported judgment
    (no assignment: its rater is not a user of this site)."""
    if project.correction_seconds == 0 or judgment.assignment_id is None:
        return None
    return judgment.created_at + timedelta(seconds=project.correction_seconds)


def judgment_correct(
    *,
    judgment_id: int,
    user: Any,
    choice: str,
    strength: int | None = None,
    rationale: str = "",
    now: datetime | None = None,
) -> Judgment:
    """Replace the answer of the caller's judgment (choice as shown: left, right or tie), keeping the
    earlier one as a revision. Refused: NotFound for a judgment not the caller's (another rater's, staff's
    look included: no existence leak), Forbidden once they no longer rate in its project, Conflict
    `not_correctable` for an imported judgment, `corrections_off` / `correction_window_closed` past the
    project's window, Invalid for what the project does not allow (the same rules as a judgment's). The
    same answer again (a double submit) changes nothing and writes no revision."""
    with transaction.atomic():
        judgment = _own_judgment_locked(judgment_id=judgment_id, user=user)
        # The time is read once the row is ours: a correction that waited for another's lock comes after
        # it, and its revision's answered_at (the other's replaced_at) is never later than its replaced_at.
        now = now or timezone.now()
        project = judgment.project
        if not judgment.can_rate:  # type: ignore[attr-defined]
            raise Forbidden("You are no longer a rater in this project.")
        if judgment.assignment_id is None:
            raise Conflict("An imported judgment cannot be corrected here.", code="not_correctable")
        until = correctable_until(judgment=judgment, project=project)
        if until is None:
            raise Conflict("This project does not allow corrections.", code="corrections_off")
        if now > until:
            raise Conflict(
                f"Judgments may be corrected for {project.correction_seconds} seconds after they are made; "
                "this one's time has passed.",
                code="correction_window_closed",
                correctable_until=until.isoformat(),
            )
        errors = judgment_errors(project=project, choice=choice, strength=strength, rationale=rationale)
        if errors:
            raise Invalid("The correction is invalid.", errors=errors)
        assert judgment.assignment is not None
        new = {
            "choice": judgment.assignment.stored_choice(choice),
            "strength": strength if choice != ShownChoice.TIE else None,
            "rationale": rationale,
        }
        old = {field: getattr(judgment, field) for field in new}
        if new == old:
            return judgment
        last = JudgmentRevision.objects.filter(judgment=judgment).order_by("-id").first()
        JudgmentRevision.objects.create(
            judgment=judgment,
            project=project,
            rater_id=judgment.rater_id,
            shown_left=judgment.assignment.shown_left,
            answered_at=judgment.created_at if last is None else last.replaced_at,
            replaced_at=now,
            **old,
        )
        for field, value in new.items():
            setattr(judgment, field, value)
        judgment.save(update_fields=list(new))
        # The judgment changed in place (neither its count nor its id): a new data version tells the
        # agreement report's cache.
        project_data_changed(project_id=project.pk, writer_id=judgment.rater_id)
    return judgment


def _own_judgment_locked(*, judgment_id: int, user: Any) -> Judgment:
    """The caller's judgment with its project, assignment and pair (the answer shows its texts), its row
    locked (a second correction of it waits: each keeps the answer it replaced), and whether they may
    still rate read along."""
    if not user.is_authenticated:
        # Never a filter on a null user: that would find the imported raters' judgments.
        raise NotFound(f"No judgment {judgment_id} of yours.")
    can_rate, params = can_rate_sql(user, f"{Judgment._meta.db_table}.project_id")
    judgment = (
        Judgment.objects.select_for_update(of=("self",))
        .select_related("project", "assignment", "pair")
        .annotate(can_rate=RawSQL(can_rate, params, output_field=BooleanField()))
        .filter(pk=judgment_id, rater__user_id=user.pk)
        .first()
    )
    if judgment is None:
        raise NotFound(f"No judgment {judgment_id} of yours.")
    return judgment
