"""Admin of the reward_models app: training runs (list with status and accuracy; the run page of
reward_models.admin_views instead of a change form), snapshots (with their download), the active model of
each project. Read-only as rows: runs are started from a project's "Train reward model" button, cancelled
and activated from their page, all through reward_models.services."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

import web.ids  # noqa: F401 (registers the `id` path converter)
from annotation.admin import ReadOnlyAdmin, object_pk
from annotation.models import Project

from . import admin_views
from .admin_forms import AutoTrainPolicyForm
from .models import ActiveModel, AutoTrainPolicy, DatasetSnapshot, PriorityRound, TrainingRun


def _utc(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}" if moment else "-"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "status",
        "progress_shown",
        "eval_accuracy",
        "length_baseline",
        "active",
        "device",
        "created",
        "finished",
    ]
    list_display_links = ["id", "status"]
    list_filter = ["status", "project"]
    list_select_related = ["project"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[TrainingRun]:
        active = ActiveModel.objects.filter(run=OuterRef("pk"))
        return super().get_queryset(request).annotate(_active=Exists(active))

    @admin.display(description="progress", ordering="progress")
    def progress_shown(self, run: TrainingRun) -> str:
        return _percent(admin_views.share(run.progress))

    @admin.display(description="held-out accuracy")
    def eval_accuracy(self, run: TrainingRun) -> str:
        return _percent(admin_views.share((run.metrics or {}).get("eval_accuracy")))

    @admin.display(description="longer response")
    def length_baseline(self, run: TrainingRun) -> str:
        return _percent(admin_views.share((run.metrics or {}).get("length_baseline_accuracy")))

    # Times as 2026-12-07 09:15 UTC, not "Dec. 7, 2026, 9:15 a.m.": ten columns and the filter then fit
    # a 1366 px window (tests/pages/test_admin_files_browser.py).
    @admin.display(description="created (UTC)", ordering="created_at")
    def created(self, run: TrainingRun) -> str:
        return _utc(run.created_at)

    @admin.display(description="finished (UTC)", ordering="finished_at")
    def finished(self, run: TrainingRun) -> str:
        return _utc(run.finished_at)

    class Media:
        css = {"all": ["reward_models/admin_pages.css"]}

    @admin.display(description="active", boolean=True, ordering="_active")
    def active(self, run: Any) -> bool:
        return bool(run._active)

    # Rows are written by the services and the worker only.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        # Before the default routes, whose "<object_id>/" would take "<id>/progress/" for a change page.
        def route(suffix: str, view: Callable[..., HttpResponseBase], name: str) -> URLPattern:
            return path(suffix, self.admin_site.admin_view(view), name=f"reward_models_trainingrun_{name}")

        return [
            route("<path:object_id>/progress/", self.progress_view, "progress"),
            route("<path:object_id>/cancel/", self.cancel_view, "cancel"),
            route("<path:object_id>/activate/", self.activate_view, "activate"),
            route("train/<path:project_id>/", self.train_view, "train"),
            path(
                "review/<path:project_id>/score/",
                self.admin_site.admin_view(self.review_score_view),
                name="reward_models_review_score",
            ),
            path(
                "review/<path:project_id>/pairs/<id:pair_id>/",
                self.admin_site.admin_view(self.review_act_view),
                name="reward_models_review_act",
            ),
            path(
                "review/<path:project_id>/",
                self.admin_site.admin_view(self.review_view),
                name="reward_models_review",
            ),
            *super().get_urls(),
        ]

    def _run(self, request: HttpRequest, object_id: str, *, change: bool = False) -> TrainingRun:
        run = get_object_or_404(
            TrainingRun.objects.select_related("project", "snapshot"), pk=object_pk(object_id)
        )
        allowed = (
            self.has_change_permission(request, run) if change else self.has_view_permission(request, run)
        )
        if not allowed:
            raise PermissionDenied
        return run

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """The run page, in place of a change form: nothing of a run is edited by hand."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        run = self._run(request, object_id)
        context = {**self.admin_site.each_context(request), "opts": self.opts, **(extra_context or {})}
        return admin_views.run_page(
            request, run, context=context, can_change=self.has_change_permission(request, run)
        )

    def progress_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        return admin_views.run_progress(self._run(request, object_id))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return admin_views.run_cancel(request, self._run(request, object_id, change=True))

    def activate_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return admin_views.run_activate(request, self._run(request, object_id, change=True))

    # The review queue of a project: seeing it takes the view permission of runs (it shows the active
    # run's scores); "Score now" the add permission of scorings; an action the add permission of review
    # actions (annotation's record of them).

    def review_view(self, request: HttpRequest, project_id: str) -> HttpResponse:
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        project = get_object_or_404(Project, pk=object_pk(project_id))
        context = {**self.admin_site.each_context(request), "opts": self.opts}
        return admin_views.review_page(
            request,
            project,
            context=context,
            can_score=request.user.has_perm("reward_models.add_pairscoring"),
            can_act=request.user.has_perm("annotation.add_pairreviewaction"),
        )

    def review_score_view(self, request: HttpRequest, project_id: str) -> HttpResponseBase:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("reward_models.add_pairscoring"):
            raise PermissionDenied
        return admin_views.review_score(request, get_object_or_404(Project, pk=object_pk(project_id)))

    def review_act_view(self, request: HttpRequest, project_id: str, pair_id: int) -> HttpResponseBase:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("annotation.add_pairreviewaction"):
            raise PermissionDenied
        project = get_object_or_404(Project, pk=object_pk(project_id))
        return admin_views.review_act(request, project, pair_id)

    def train_view(self, request: HttpRequest, project_id: str) -> HttpResponse:
        """The "Train reward model" form of a project: staff who may add runs."""
        if not request.user.has_perm("reward_models.add_trainingrun"):
            raise PermissionDenied
        project = get_object_or_404(Project, pk=object_pk(project_id))
        context = {**self.admin_site.each_context(request), "opts": self.opts}
        return admin_views.train(request, project, context=context)


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "project",
        "reason",
        "rows",
        "pairs",
        "size_bytes",
        "short_sha256",
        "created_at",
        "file_link",
    ]
    list_filter = ["reason", "project"]
    list_select_related = ["project"]
    readonly_fields = [
        "project",
        "reason",
        "since",
        "until",
        "min_votes",
        "rows",
        "pairs",
        "size_bytes",
        "sha256",
        "last_judgment_id",
        "created_at",
        "file_link",
    ]
    exclude = ["file"]
    show_full_result_count = False

    @admin.display(description="sha256")
    def short_sha256(self, snapshot: DatasetSnapshot) -> str:
        return snapshot.sha256[:12]

    @admin.display(description="file")
    def file_link(self, snapshot: DatasetSnapshot) -> str:
        url = reverse("admin:reward_models_datasetsnapshot_download", args=[snapshot.pk])
        return format_html('<a href="{}">download</a>', url)

    def get_urls(self) -> list[URLPattern]:
        download = path(
            "<path:object_id>/download/",
            self.admin_site.admin_view(self.download_view),
            name="reward_models_datasetsnapshot_download",
        )
        return [download, *super().get_urls()]

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        snapshot = get_object_or_404(
            DatasetSnapshot.objects.select_related("project"), pk=object_pk(object_id)
        )
        if not self.has_view_permission(request, snapshot):
            raise PermissionDenied
        return admin_views.snapshot_download(snapshot)


@admin.register(ActiveModel)
class ActiveModelAdmin(ReadOnlyAdmin):
    """Which run scores for each project; set from a run's page (Activate), which checks the model first."""

    list_display = ["project", "run_link", "activated_by", "activated_at", "forced_reason"]
    list_select_related = ["project", "run", "activated_by"]
    readonly_fields = ["project", "run_link", "activated_by", "activated_at", "forced_reason"]
    exclude = ["run"]

    @admin.display(description="run")
    def run_link(self, active: ActiveModel) -> str:
        url = reverse("admin:reward_models_trainingrun_change", args=[active.run_id])
        return format_html('<a href="{}">run {}</a>', url, active.run_id)


@admin.register(PriorityRound)
class PriorityRoundAdmin(ReadOnlyAdmin):
    """The rounds that wrote the pairs' priorities under uncertainty selection (beat, activations and
    `manage.py score_priorities` start them), with their progress and how they ended."""

    list_display = [
        "id",
        "project",
        "run_id",
        "status",
        "done",
        "total",
        "written",
        "replaced",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "project"]
    list_select_related = ["project"]
    readonly_fields = [
        "project",
        "run",
        "status",
        "replaced",
        "total",
        "done",
        "written",
        "error",
        "created_at",
        "started_at",
        "updated_at",
        "finished_at",
    ]
    show_full_result_count = False


@admin.register(AutoTrainPolicy)
class AutoTrainPolicyAdmin(admin.ModelAdmin):
    """When a project trains by itself (beat's auto-train task); off by default. The form checks the runs'
    config as the Train form does, so the beat task never meets a config it cannot queue."""

    form = AutoTrainPolicyForm
    list_display = ["project", "enabled", "after_new_judgments", "every_hours", "last_started_at"]
    list_filter = ["enabled"]
    list_select_related = ["project"]
    readonly_fields = ["last_started_at", "last_judgment_id"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A policy belongs to its project for good (one per project).
        return [*self.readonly_fields, "project"] if obj is not None else list(self.readonly_fields)
