"""The rater's pages: thin views over the same services and selectors as the REST API.

GET of the rating page serves the rater's current pair through services.assignment_next, which returns
the pair already held, so a reload never costs a pair. Answers are plain form posts (Post/Redirect/Get);
rate.js upgrades them to calls of the REST endpoints, so the next pair comes without a page load.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from annotation import selectors, services
from annotation.models import Assignment, Judgment, Project, RationaleMode, ShownChoice, Side, shown_choice
from web.errors import Conflict, Forbidden, Invalid, NotFound
from web.ids import parse_id

from .forms import CorrectionForm, JudgmentForm, SkipForm
from .text import markdown_html, pair_view

# What a rater is told when an answer could not be recorded (ServiceError codes of judgment_record).
CONFLICT_MESSAGES = {
    "already_judged": "That pair already had your answer (from another tab or an earlier try); "
    "this one was not saved.",
    "assignment_expired": "Your answer was not saved: the hold on that pair ran out and another rater "
    "took it. Here is a new pair.",
    "assignment_skipped": "That pair was skipped, so the answer was not saved.",
}


def _project(request: HttpRequest, slug: str) -> Project:
    try:
        return selectors.project_get_visible(slug=slug, user=request.user)
    except NotFound as exc:
        raise Http404(exc.detail) from None


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """Anonymous visitors go to the login page; raters (and staff) see their projects and progress."""
    if not request.user.is_authenticated:
        return redirect("login")
    rater = services.rater_get_or_create(user=request.user)
    rows = [
        {"project": project, **selectors.rater_progress(project=project, rater=rater)}
        for project in selectors.projects_visible_to(request.user)
    ]
    return render(request, "annotation/pages/home.html", {"rows": rows})


# never_cache: Back after judging must not show a pair from the browser's cache, already answered.
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def rate(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    if request.method == "POST":
        return _answer(request, project)
    return _page(request, project)


def _answer(request: HttpRequest, project: Project) -> HttpResponse:
    """A judgment or a skip posted by the form, recorded by the same service as the API's."""
    try:
        if request.POST.get("action") == "skip":
            skip = SkipForm(request.POST)
            if not skip.is_valid():
                return _page(request, project, skip_form=skip, status=400)
            services.assignment_skip(
                assignment_id=skip.cleaned_data["assignment"],
                user=request.user,
                reason=skip.cleaned_data["reason"],
            )
            messages.info(request, "Skipped. That pair will not come back to you.")
            return redirect("rate", slug=project.slug)
        form = JudgmentForm(request.POST)
        if not form.is_valid():
            return _page(request, project, form=form, status=400)
        try:
            data = form.cleaned_data
            services.judgment_record(
                assignment_id=data["assignment"],
                user=request.user,
                choice=data["choice"],
                strength=data["strength"],
                rationale=data["rationale"],
                client_time_ms=data["client_time_ms"],
            )
        except Invalid as exc:
            for error in exc.errors:
                field = error.get("field")
                form.add_error(field if field in form.fields else None, error["message"])
            return _page(request, project, form=form, status=400)
        messages.success(request, "Saved.")
    except Conflict as exc:
        messages.warning(request, CONFLICT_MESSAGES.get(exc.code, exc.detail))
    except NotFound as exc:
        raise Http404(exc.detail) from None  # not this rater's assignment
    except Forbidden as exc:
        raise PermissionDenied(exc.detail) from None
    return redirect("rate", slug=project.slug)


def _page(
    request: HttpRequest,
    project: Project,
    *,
    form: JudgmentForm | None = None,
    skip_form: SkipForm | None = None,
    status: int = 200,
) -> HttpResponse:
    try:
        served = services.assignment_next(project=project, user=request.user)
    except Forbidden as exc:
        raise PermissionDenied(exc.detail) from None
    if served is None:
        return _nothing_left(request, project)
    assignment, progress = served.assignment, served.progress
    posted = form or skip_form
    if posted is not None and posted.data.get("assignment") != str(assignment.pk):
        # The answer was for another pair than the one now served (its hold ran out): never show its
        # choices on this pair, where they would look like an answer the rater gave.
        messages.warning(request, "The pair you answered is no longer yours; here is your current one.")
        form = skip_form = None
    now = timezone.now()
    context = {
        **_answer_context(project, assignment, form),
        "progress": progress,
        # Open for a rater's first pairs, folded once they know them (the panel stays one click away).
        "instructions_open": progress["done"] < 3,
        "lease_left_ms": max(0, int((assignment.lease_expires_at - now).total_seconds() * 1000)),
        "skip_form": skip_form,
        "undo": selectors.judgment_to_undo(project=project, rater_id=assignment.rater_id, now=now),
    }
    return render(request, "annotation/pages/rate.html", context, status=status)


def _answer_context(
    project: Project, assignment: Assignment, form: forms.Form | None, answer: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What rate.html shows of a pair and its answer form, for a pair to judge and for one to correct:
    the answer from the posted form, else ``answer`` (a correction's current answer), else none."""
    if form is not None:
        answer = {
            "choice": form["choice"].value(),
            "strength": _int_or_none(form["strength"].value()),
            "rationale": form["rationale"].value() or "",
        }
    answer = answer or {"choice": None, "strength": None, "rationale": ""}
    return {
        "project": project,
        "assignment": assignment,
        "instructions_html": markdown_html(project.instructions),
        "pair": _pair_view(assignment),
        "today_ms": (today_ms := selectors.rater_time_today_ms(rater=assignment.rater_id)),
        "today_text": duration_text(today_ms),
        "strength_range": range(1, project.strength_levels + 1),
        "rationale_required": project.rationale == RationaleMode.REQUIRED,
        "rationale_on": project.rationale != RationaleMode.OFF,
        "form": form,
        **answer,
    }


def _pair_view(assignment: Assignment) -> dict[str, Any]:
    pair = assignment.pair
    return pair_view(
        prompt=pair.prompt,
        messages=pair.messages,
        responses=[
            ("left", "Response 1", assignment.text_on(ShownChoice.LEFT)),
            ("right", "Response 2", assignment.text_on(ShownChoice.RIGHT)),
        ],
    )


# never_cache: the fragment is one rater's pair. GET only: reading it changes nothing.
@never_cache
@login_required
@require_safe
def rate_pair(request: HttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    """One of the rater's pairs as the rating page shows it (`_pair.html`): rate.js loads it for the next
    pair the API served, so a pair looks the same however it reached the page, and the markdown is
    rendered where the instructions are (text.py), never by a script in the page."""
    project = _project(request, slug)
    try:
        assignment = selectors.assignment_get_own(
            project=project, user=request.user, assignment_id=assignment_id
        )
    except NotFound as exc:
        raise Http404(exc.detail) from None
    context = {"assignment": assignment, "pair": _pair_view(assignment), "keys": True}
    return render(request, "annotation/pages/_pair.html", context)


def duration_text(ms: int) -> str:
    """ "0 min", "42 min", "1 h 05 min": the page's clock (static/pairwise/clock.js) says it the same way."""
    minutes = ms // 60_000
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _nothing_left(request: HttpRequest, project: Project) -> HttpResponse:
    """Done, or wait: the pairs still open to the rater are held by others (API.md: 204 + Retry-After)."""
    rater = services.rater_get_or_create(user=request.user)
    wait = selectors.rater_wait_seconds(project=project, rater=rater)
    context = {
        "project": project,
        "wait": wait,
        "wait_minutes": None if wait is None else max(1, round(wait / 60)),
        "progress": selectors.rater_progress(project=project, rater=rater),
        "undo": selectors.judgment_to_undo(project=project, rater_id=rater.pk, now=timezone.now()),
    }
    response = render(request, "annotation/pages/nothing_left.html", context)
    if wait is not None:
        response["Retry-After"] = str(wait)
    return response


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


# Corrections: the rater's own judgments, and one of them served again for a new answer (the rating
# page's Undo links here), corrected by services.judgment_correct as through the API.

MY_JUDGMENTS_PAGE = 20
# An answer as the list names it: the sides as the rating page titles them.
ANSWER_NAMES = {ShownChoice.LEFT: "Response 1", ShownChoice.RIGHT: "Response 2", ShownChoice.TIE: "Tie"}


@never_cache
@login_required
@require_safe
def my_judgments(request: HttpRequest, slug: str) -> HttpResponse:
    """The rater's judgments in the project, newest first, 20 a page (`?before=<id>` for older ones)."""
    project = _project(request, slug)
    rows = selectors.rater_judgments(project=project, user=request.user).order_by("-id")
    before = parse_id(request.GET.get("before", ""))  # any other text: the first page
    if before is not None:
        rows = rows.filter(pk__lt=before)
    page = list(rows[: MY_JUDGMENTS_PAGE + 1])
    now = timezone.now()
    items = []
    for judgment in page[:MY_JUDGMENTS_PAGE]:
        until = services.correctable_until(judgment=judgment, project=project)
        items.append(
            {
                "judgment": judgment,
                # Judgments of this site's users always record the sides (imported ones are no user's).
                "choice": ANSWER_NAMES[
                    shown_choice(shown_left=judgment.shown_left or Side.A, choice=judgment.choice)
                ],
                "revisions": [
                    ANSWER_NAMES[shown_choice(shown_left=r.shown_left, choice=r.choice)]
                    for r in judgment.revisions.all()
                ],
                "correctable": until is not None and now <= until,
                "until": until,
            }
        )
    older = page[MY_JUDGMENTS_PAGE - 1].pk if len(page) > MY_JUDGMENTS_PAGE else None
    context = {"project": project, "items": items, "older": older, "first_page": before is None}
    return render(request, "annotation/pages/my_judgments.html", context)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def correct(request: HttpRequest, slug: str, judgment_id: int) -> HttpResponse:
    """The pair of one of the rater's judgments with its answer selected, to answer again (GET); the new
    answer (POST), after which the rater goes back where they came from."""
    project = _project(request, slug)
    judgment = (
        selectors.rater_judgments(project=project, user=request.user)
        .select_related("assignment__pair")
        .prefetch_related(None)  # the page shows no revision: the list's prefetch would be a wasted query
        .filter(pk=judgment_id)
        .first()
    )
    if judgment is None:
        raise Http404("No such judgment of yours in this project.")
    back = "my-judgments" if request.POST.get("back", request.GET.get("back")) == "list" else "rate"
    until = services.correctable_until(judgment=judgment, project=project)
    if until is None or timezone.now() > until:
        messages.warning(request, "That judgment can no longer be corrected: its time has passed.")
        return redirect(back, slug=project.slug)
    form = None
    if request.method == "POST":
        form = CorrectionForm(request.POST)
        if form.is_valid():
            try:
                services.judgment_correct(judgment_id=judgment.pk, user=request.user, **form.cleaned_data)
            except Invalid as exc:
                for error in exc.errors:
                    field = error.get("field")
                    form.add_error(field if field in form.fields else None, error["message"])
            except Conflict as exc:
                messages.warning(request, exc.detail)
                return redirect(back, slug=project.slug)
            except Forbidden as exc:
                raise PermissionDenied(exc.detail) from None
            else:
                messages.success(request, "Corrected. Your earlier answer is kept as a revision.")
                return redirect(back, slug=project.slug)
    return _correction_page(request, project, judgment, until, form, back)


def _correction_page(
    request: HttpRequest,
    project: Project,
    judgment: Judgment,
    until: Any,
    form: CorrectionForm | None,
    back: str,
) -> HttpResponse:
    assert judgment.assignment is not None  # correctable_until is None for imported judgments
    current = {
        "choice": shown_choice(shown_left=judgment.assignment.shown_left, choice=judgment.choice),
        "strength": judgment.strength,
        "rationale": judgment.rationale,
    }
    context = {
        **_answer_context(project, judgment.assignment, form, current),
        "progress": selectors.rater_progress(project=project, rater=judgment.rater_id),
        "instructions_open": False,
        "correcting": judgment,
        "correctable_until": until,
        "correct_left_ms": max(0, int((until - timezone.now()).total_seconds() * 1000)),
        "back": back,
    }
    return render(request, "annotation/pages/rate.html", context, status=400 if form is not None else 200)
