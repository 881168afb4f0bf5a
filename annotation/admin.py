"""Admin pages: projects with their raters, pairs, and read-only assignments and judgments."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from rm_training import conversation, jsonl
from web.errors import Conflict
from web.ids import parse_id

from . import admin_files, services
from .models import Assignment, Judgment, Membership, Pair, PairReviewAction, Project, Rater, Selection
from .pages.text import pair_view


def object_pk(object_id: str) -> int:
    """An admin URL's object id as a primary key, or 404 (web.ids.parse_id's rule)."""
    parsed = parse_id(object_id)
    if parsed is None:
        raise Http404("No such object.")
    return parsed


class MembershipInline(admin.TabularInline):
    """The project's raters, read-only: adding and removing go through the services (the form's fields
    below), so that a removed rater's open assignment gives its place back."""

    model = Membership
    extra = 0
    fields = ("user", "added_at")
    readonly_fields = ("user", "added_at")
    can_delete = False
    verbose_name_plural = "raters (add or remove them with the fields above)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ProjectAdminForm(forms.ModelForm):
    add_raters = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        widget=FilteredSelectMultiple("users", is_stacked=False),
        help_text="Users to add as raters of this project.",
    )
    remove_raters = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        help_text="Raters to remove; their judgments stay, and a pair they hold goes back to the pool.",
    )

    class Meta:
        model = Project
        fields = ["slug", *services.PROJECT_ADMIN_SETTINGS]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            members = get_user_model().objects.filter(memberships__project=self.instance)
            remove = self.fields["remove_raters"]
            assert isinstance(remove, forms.ModelMultipleChoiceField)
            remove.queryset = members.order_by("username")
            # Only users who are not raters of this project yet: the others are in "remove".
            add = self.fields["add_raters"]
            assert isinstance(add, forms.ModelMultipleChoiceField)
            active = get_user_model().objects.filter(is_active=True).order_by("username")
            add.queryset = active.exclude(memberships__project=self.instance)


def _warn_of_images(request: HttpRequest, instructions: str) -> None:
    """Saved, with a warning (not an error): an image from another site, which the rating page will not load
    (its CSP), reaches raters as its alt text and address only, which the admin would otherwise never see."""
    from annotation.pages.text import unloadable_images

    images = unloadable_images(instructions)
    if images:
        listed = "; ".join(
            f"{alt or '(no alt text)'} at {address or '(no address)'}" for alt, address in images
        )
        messages.warning(
            request,
            f"The instructions hold {len(images)} image(s) the rating page will not load ({listed}): it "
            "loads no image from another site (its Content-Security-Policy), so raters see only the alt "
            "text and the address. Describe it in words, or use an image of this site or a data: URL.",
        )


def _count_of(model: Any) -> Coalesce:
    """Rows of `model` in each project, as a subquery: two joined COUNTs would multiply their rows."""
    rows = model.objects.filter(project=OuterRef("pk")).order_by().values("project")
    return Coalesce(Subquery(rows.annotate(n=Count("pk")).values("n")), Value(0))


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectAdminForm
    list_display = [
        "slug",
        "name",
        "judgments_per_pair",
        "pair_count",
        "judgment_total",
        "created_at",
        "agreement_link",
    ]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]
    actions = ["recount_counters"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "instructions"]}),
        ("Raters", {"fields": ["rater_group", "add_raters", "remove_raters"]}),
        ("Rating", {"fields": ["judgments_per_pair", "allow_tie", "strength_levels", "rationale"]}),
        (
            "Assignment",
            {"fields": ["lease_seconds", "gold_fraction", "selection", "selection_epsilon", "selection_now"]},
        ),
        ("Agreement dashboard", {"fields": ["very_fast_ms"]}),
    ]

    @admin.action(description="Recount progress counters (and repair them)", permissions=["change"])
    def recount_counters(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        for project in queryset:
            recount = services.counters_recount(project=project)
            state = "repaired" if recount.repaired else "were right"
            self.message_user(request, f"{project.slug}: counters {state}.")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The API names a project by its slug for good: renaming it would break every URL and export.
        return ["slug", "selection_now"] if obj is not None else ["selection_now"]

    @admin.display(description="selection in effect")
    def selection_now(self, project: Project) -> str:
        if project.selection_in_effect == Selection.UNCERTAINTY:
            return f"Uncertainty, priorities written {project.priorities_at:%Y-%m-%d %H:%M}."
        if project.selection == Selection.UNCERTAINTY:
            return "Default order: no active reward model has scored the pairs yet."
        return "Default order."

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Any]:
        return {} if obj is not None else {"slug": ["name"]}

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:  # nobody to remove yet
            return [
                (name, {"fields": [f for f in opts["fields"] if f != "remove_raters"]})
                for name, opts in self.fieldsets
            ]
        return self.fieldsets

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return super().get_queryset(request).annotate(_pairs=_count_of(Pair), _judgments=_count_of(Judgment))

    def save_model(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> None:
        """Through the services, like every write: the same checks as the API."""
        values = {f: form.cleaned_data[f] for f in services.PROJECT_ADMIN_SETTINGS if f in form.cleaned_data}
        if change:
            changed = {f: v for f, v in values.items() if f in form.changed_data}
            services.project_update(project=obj, changes=changed)
        else:
            created = services.project_create(slug=obj.slug, **values)
            obj.pk, obj.created_at = created.pk, created.created_at
        if "instructions" in form.changed_data:
            _warn_of_images(request, form.cleaned_data.get("instructions") or "")

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        project = form.instance
        added = [user.get_username() for user in form.cleaned_data.get("add_raters") or []]
        if added:
            services.project_raters_add(project=project, usernames=added)
        for user in form.cleaned_data.get("remove_raters") or []:
            services.project_rater_remove(project=project, username=user.get_username())

    @admin.display(description="pairs", ordering="_pairs")
    def pair_count(self, project: Any) -> int:
        return int(project._pairs)

    @admin.display(description="judgments", ordering="_judgments")
    def judgment_total(self, project: Any) -> int:
        return int(project._judgments)

    @admin.display(description="agreement")
    def agreement_link(self, project: Project) -> str:
        url = reverse("admin:annotation_project_agreement", args=[project.pk])
        return format_html('<a href="{}">dashboard</a>', url)

    def get_urls(self) -> list[URLPattern]:
        # Before the default routes: their "<object_id>/" would take "<id>/agreement/" for a change page.
        dashboard = path(
            "<path:object_id>/agreement/",
            self.admin_site.admin_view(self.agreement_view),
            name="annotation_project_agreement",
        )
        leaderboard = path(
            "<path:object_id>/leaderboard/",
            self.admin_site.admin_view(self.leaderboard_view),
            name="annotation_project_leaderboard",
        )
        files = path(
            "<path:object_id>/files/",
            self.admin_site.admin_view(self.files_view),
            name="annotation_project_files",
        )
        export = path(
            "<path:object_id>/files/export/",
            self.admin_site.admin_view(self.export_view),
            name="annotation_project_export",
        )
        return [dashboard, leaderboard, export, files, *super().get_urls()]

    def agreement_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The project's agreement dashboard (annotation.pages.dashboard); staff who may view the project."""
        from annotation.pages.dashboard import project_dashboard

        project = get_object_or_404(Project, pk=object_pk(object_id))
        if not self.has_view_permission(request, project):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.opts}
        return project_dashboard(request, project, context=context)

    def leaderboard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The project's leaderboard of models (annotation.pages.leaderboard); staff who may view it."""
        from annotation.pages.leaderboard import project_leaderboard_page

        project = get_object_or_404(Project, pk=object_pk(object_id))
        if not self.has_view_permission(request, project):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.opts}
        return project_leaderboard_page(request, project, context=context)

    def files_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        """Upload pairs or judgments, download the exports (annotation.admin_files)."""
        project = get_object_or_404(Project, pk=object_pk(object_id))
        return admin_files.files_page(self, request, project)

    def export_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        project = get_object_or_404(Project, pk=object_pk(object_id))
        return admin_files.export_download(self, request, project)


class PairForm(forms.ModelForm):
    """A pair's messages checked as the import checks them (rm_training.conversation, in its words), and its
    prompt kept their text rendering: the rating page, the exports and the trainer read both."""

    # No Meta: the admin builds the form's Meta from PairAdmin (modelform_factory).
    def clean_metadata(self) -> Any:
        # As the import refuses it: the form's JSON reader takes NaN and Infinity, and PostgreSQL's jsonb
        # then refused them and \u0000 with a server error.
        metadata = self.cleaned_data.get("metadata")
        if metadata is None:
            return {}  # an emptied box: no metadata, as the import stores it (the column is NOT NULL)
        if not isinstance(metadata, dict):
            raise forms.ValidationError("Must be a JSON object.")
        try:
            json.dumps(metadata, allow_nan=False)
        except ValueError:
            raise forms.ValidationError("NaN and Infinity are not JSON numbers.") from None
        problems = [
            f"{jsonl.dotted(where) or 'metadata'}: {problem}."
            for where, problem in jsonl.text_problems(metadata)
        ]
        if problems:
            raise forms.ValidationError(problems)
        return metadata

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        external_id = cleaned.get("external_id")
        # On a change the project is read-only, so Django's own check of the (project, external_id)
        # constraint leaves it out.
        if external_id and self.instance.pk is not None:
            taken = Pair.objects.filter(project_id=self.instance.project_id, external_id=external_id)
            if taken.exclude(pk=self.instance.pk).exists():
                self.add_error("external_id", "This project already has a pair with this external id.")
        messages = cleaned.get("messages")
        if messages is None and "prompt" in cleaned and conversation.prompt_problems(cleaned["prompt"]):
            # As the import refuses it: a prompt of spaces or invisible characters only.
            self.add_error("prompt", "Must not be empty or blank.")
        if messages is None or "messages" in self.errors:
            return cleaned
        # The import's parser refuses text that cannot be stored (a NUL) before the format's checks.
        problems = list(jsonl.text_problems(messages)) or conversation.message_problems(messages)
        if problems:
            self.add_error("messages", [f"{where or 'messages'}: {message}." for where, message in problems])
            return cleaned
        cleaned["prompt"], cleaned["messages"] = conversation.normalize(messages)
        return cleaned


JUDGED_SINCE = "This pair was judged since you opened it; a judged pair cannot change. Nothing was saved."


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    form = PairForm
    list_display = [
        "id",
        "external_id",
        "project",
        "short_prompt",
        "judgment_count",
        "gold",
        "left_out",
        "created_at",
    ]
    list_filter = ["project", "gold", "left_out"]
    search_fields = ["external_id", "prompt"]
    list_select_related = ["project"]
    readonly_fields = [
        "judgment_count",
        "extra_judgments",
        "left_out",
        "review_record",
        "content_sha256",
        "created_at",
        "preview",
    ]
    show_full_result_count = False

    class Media:
        css = {"all": ["pairwise/pair.css"]}

    @admin.display(description="as raters see it")
    def preview(self, pair: Pair) -> str:
        # The rating page's own rendering (text.py: safe markdown, the conversation as turns), a and b
        # named as stored rather than as a rater's left and right.
        if pair.pk is None:
            return "-"
        view = pair_view(
            prompt=pair.prompt,
            messages=pair.messages,
            responses=[("a", "Response A", pair.response_a), ("b", "Response B", pair.response_b)],
        )
        return render_to_string("annotation/pages/_pair.html", {"pair": view})

    @admin.display(description="review actions")
    def review_record(self, pair: Pair) -> str:
        # The review queue's record of the pair (who did what, when and why), never changed or deleted.
        actions = PairReviewAction.objects.filter(pair_id=pair.pk).select_related("by").order_by("id")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{a.created_at:%Y-%m-%d %H:%M} UTC",
                    a.by.get_username(),
                    a.get_action_display() + (f" (+{a.extra_judgments})" if a.extra_judgments else ""),
                    a.judgment_count,
                    a.reason,
                )
                for a in actions
            ),
        )
        if not rows:
            return "-"
        return format_html(
            '<table class="review-record"><tr><th>when</th><th>who</th><th>what</th><th>judgments then</th>'
            "<th>why</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="prompt")
    def short_prompt(self, pair: Pair) -> str:
        return pair.prompt if len(pair.prompt) <= 80 else pair.prompt[:79] + "…"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A pair stays in the project it was imported into: moved, it would leave its assignments and its
        # raters' counts behind (pair_save counts a pair out and in within one project).
        return [*self.readonly_fields, "project"] if obj is not None else list(self.readonly_fields)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A judged pair's text is what its judgments refer to; changing it would falsify them.
        if obj is not None and obj.judgment_count:
            return False
        return super().has_change_permission(request, obj)

    # Through the services, which keep the project's counters (annotation.services.engine.counters).
    def save_model(self, request: HttpRequest, obj: Pair, form: Any, change: bool) -> None:
        services.pair_save(pair=obj, adding=not change)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        # A form opened before the pair was judged (saved after: the admin would answer 403), or a rater who
        # took or judged the pair between the form's read and its save (pair_save refuses under the lock):
        # nothing saved, the pair shown again with why.
        if request.method == "POST" and object_id is not None:
            pair = self.get_object(request, object_id)
            if pair is not None and pair.judgment_count and self.has_view_permission(request, pair):
                self.message_user(request, JUDGED_SINCE, messages.ERROR)
                return HttpResponseRedirect(request.get_full_path())
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except Conflict as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj: Pair) -> None:
        services.pairs_delete(pairs=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Pair]) -> None:
        services.pairs_delete(pairs=queryset.select_related("project"))


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
