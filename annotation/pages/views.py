"""The rater's pages: thin views over the same services and selectors as the REST API.

GET of the rating page serves the rater's current pair through services.assignment_next, which returns
the pair already held, so a reload never costs a pair. Answers are plain form posts (Post/Redirect/Get);
rate.js upgrades them to calls of the REST endpoints, so the next pair comes without a page load.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from annotation import selectors, services
from annotation.models import Assignment, Project, RationaleMode, ShownChoice
from web.errors import Conflict, Forbidden, Invalid, NotFound

from .forms import JudgmentForm, SkipForm
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
    context = {
        "project": project,
        "assignment": assignment,
        "progress": progress,
        "instructions_html": markdown_html(project.instructions),
        # Open for a rater's first pairs, folded once they know them (the panel stays one click away).
        "instructions_open": progress["done"] < 3,
        "pair": _pair_view(assignment),
        "today_ms": (today_ms := selectors.rater_time_today_ms(rater=assignment.rater_id)),
        "today_text": duration_text(today_ms),
        "lease_left_ms": max(0, int((assignment.lease_expires_at - timezone.now()).total_seconds() * 1000)),
        "strength_range": range(1, project.strength_levels + 1),
        "rationale_required": project.rationale == RationaleMode.REQUIRED,
        "rationale_on": project.rationale != RationaleMode.OFF,
        "form": form,
        "skip_form": skip_form,
        "choice": form["choice"].value() if form else None,
        "strength": _int_or_none(form["strength"].value()) if form else None,
        "rationale": (form["rationale"].value() or "") if form else "",
    }
    return render(request, "annotation/pages/rate.html", context, status=status)


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
