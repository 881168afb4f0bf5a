"""Admin pages: projects with their raters, pairs, and read-only assignments and judgments."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from .models import Assignment, Judgment, Membership, Pair, Project, Rater


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["added_at"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "judgments_per_pair", "pair_count", "judgment_total", "created_at"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["slug", "name", "instructions", "rater_group"]}),
        ("Rating", {"fields": ["judgments_per_pair", "allow_tie", "strength_levels", "rationale"]}),
        ("Assignment", {"fields": ["lease_seconds", "gold_fraction"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return (
            super()
            .get_queryset(request)
            .annotate(_pairs=Count("pairs", distinct=True), _judgments=Count("judgments", distinct=True))
        )

    @admin.display(description="pairs", ordering="_pairs")
    def pair_count(self, project: Any) -> int:
        return int(project._pairs)

    @admin.display(description="judgments", ordering="_judgments")
    def judgment_total(self, project: Any) -> int:
        return int(project._judgments)


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ["id", "external_id", "project", "short_prompt", "judgment_count", "gold", "created_at"]
    list_filter = ["project", "gold"]
    search_fields = ["external_id", "prompt"]
    list_select_related = ["project"]
    readonly_fields = ["judgment_count", "content_sha256", "created_at"]
    show_full_result_count = False

    @admin.display(description="prompt")
    def short_prompt(self, pair: Pair) -> str:
        return pair.prompt if len(pair.prompt) <= 80 else pair.prompt[:79] + "…"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A judged pair's text is what its judgments refer to; changing it would falsify them.
        if obj is not None and obj.judgment_count:
            return False
        return super().has_change_permission(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is kept as it was recorded: no adding, changing or deleting from the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "pair", "rater", "shown_left", "status", "served_at", "lease_expires_at"]
    list_filter = ["status", "project"]
    search_fields = ["rater__user__username", "rater__pseudonym", "pair__external_id"]
    list_select_related = ["project", "pair", "rater__user"]
    date_hierarchy = "served_at"
    show_full_result_count = False


@admin.register(Judgment)
class JudgmentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "project",
        "pair",
        "rater",
        "choice",
        "strength",
        "shown_left",
        "time_on_task_ms",
        "created_at",
    ]
    list_filter = ["project", "choice", "shown_left"]
    search_fields = ["rater__user__username", "rater__pseudonym", "pair__external_id", "rationale"]
    list_select_related = ["project", "pair", "rater__user"]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(Rater)
class RaterAdmin(ReadOnlyAdmin):
    list_display = ["pseudonym", "user", "created_at"]
    search_fields = ["pseudonym", "user__username"]
    list_select_related = ["user"]
