"""A project's files in the admin: upload pairs or judgments, download every export.

Thin views over annotation.files: an upload is read by the API's own parsers and stored by the same
all-or-nothing services (pairs_import, judgments_import); a download is the API's export answer, its
filters checked by the API's own query serializers. Staff reach it through the admin site (login, staff,
CSRF); each part needs its model permission as well.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect, QueryDict
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from rest_framework import serializers as drf

from annotation import files, services
from annotation.api import serializers as s
from annotation.models import Project
from rm_training import conversation
from web.errors import ServiceError, add_lines

# Errors listed on the page; a file with thousands of bad items needs no more to be fixed.
ERRORS_SHOWN = 200

# What a file may hold: pairs in one of the import API's formats (?format=), or judgments.
UPLOAD_PERMISSIONS = {
    "pairs": "annotation.add_pair",
    "trl": "annotation.add_pair",
    "hh-rlhf": "annotation.add_pair",
    "judgments": "annotation.add_judgment",
}
EXPORT_PERMISSION = "annotation.view_judgment"

# The download buttons: the file's name, the API's export it is, and its fixed parameters.
EXPORTS: dict[str, tuple[str, dict[str, str]]] = {
    "judgments.jsonl": ("judgments", {}),
    "judgments.csv": ("judgments", {}),
    "preferences.jsonl": ("preferences", {"format": "standard"}),
    "preferences-conversational.jsonl": ("preferences", {"format": "conversational"}),
}
_FILTERS = ("since", "until", "min_votes")


def upload_limit() -> int:
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


_KIND_LABELS = {
    "pairs": "Pairs",
    "trl": "Pairs from TRL preference rows (prompt, chosen, rejected)",
    "hh-rlhf": "Pairs from HH-RLHF transcripts (chosen, rejected)",
    "judgments": "Judgments",
}


class UploadForm(forms.Form):
    kind = forms.ChoiceField(choices=list(_KIND_LABELS.items()), label="What the file holds")
    file = forms.FileField(
        label="File",
        widget=forms.ClearableFileInput(attrs={"accept": ".json,.jsonl,.ndjson,application/json"}),
    )

    def __init__(self, *args: Any, kinds: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kind = self.fields["kind"]
        assert isinstance(kind, forms.ChoiceField)
        kind.choices = [(k, label) for k, label in _KIND_LABELS.items() if k in kinds]
        self.fields["file"].help_text = (
            'A JSON list, {"pairs": [...]} or {"judgments": [...]} (.json), or JSON Lines (.jsonl): '
            f"the forms the import API takes. At most {filesizeformat(upload_limit())} and "
            f"{settings.PAIRWISE_MAX_IMPORT_ITEMS} items; all or nothing."
        )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > upload_limit():
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; the limit is {filesizeformat(upload_limit())}. "
                "Split it; nothing was stored."
            )
        return upload


def files_page(model_admin: Any, request: HttpRequest, project: Project) -> HttpResponseBase:
    if not model_admin.has_view_permission(request, project):
        raise PermissionDenied
    kinds = [kind for kind, perm in UPLOAD_PERMISSIONS.items() if request.user.has_perm(perm)]
    form = UploadForm(kinds=kinds)
    refusal: ServiceError | None = None
    if request.method == "POST":
        if not kinds:
            raise PermissionDenied
        form = UploadForm(request.POST, request.FILES, kinds=kinds)
        if form.is_valid():
            kind, upload = form.cleaned_data["kind"], form.cleaned_data["file"]
            try:
                summary = _import(project, kind, upload)
            except ServiceError as exc:
                refusal = exc
            else:
                messages.success(request, f"From {upload.name}: {summary}")
                return HttpResponseRedirect(request.path)
    status = 400 if refusal is not None or form.errors else 200
    return _render(model_admin, request, project, form=form, refusal=refusal, status=status)


def _import(project: Project, kind: str, upload: Any) -> str:
    what = "judgments" if kind == "judgments" else "pairs"
    items = files.upload_items(upload, name=upload.name, what=what)
    limit = settings.PAIRWISE_MAX_IMPORT_ITEMS
    try:
        if what == "pairs":
            fmt = cast(conversation.Format, kind)  # one of UploadForm's choices
            pairs = services.pairs_import(project=project, items=items, max_items=limit, format=fmt)
            return f"{pairs.created} pairs imported, {pairs.unchanged} already there."
        judgments = services.judgments_import(project=project, items=items, max_items=limit)
        return f"{judgments.created} judgments imported, {judgments.raters_created} new imported raters."
    except ServiceError as refusal:
        add_lines(refusal, items)
        raise


def export_download(model_admin: Any, request: HttpRequest, project: Project) -> HttpResponseBase:
    """One export file, streamed, with the filters of the query string (empty fields left out)."""
    if not model_admin.has_view_permission(request, project) or not request.user.has_perm(EXPORT_PERMISSION):
        raise PermissionDenied
    name = request.GET.get("file", "")
    if name not in EXPORTS:
        return _render(model_admin, request, project, export_errors={"file": ["Choose one of the files."]})
    what, fixed = EXPORTS[name]
    query = QueryDict(mutable=True)
    for key in _FILTERS + (("raw",) if name == "judgments.csv" else ()):
        if request.GET.get(key):
            query[key] = request.GET[key]
    query.update(fixed)
    serializer_class = (
        s.JudgmentsExportQuerySerializer if what == "judgments" else s.PreferencesQuerySerializer
    )
    serializer = serializer_class(data=query)
    try:
        serializer.is_valid(raise_exception=True)
    except drf.ValidationError as exc:
        return _render(model_admin, request, project, export_errors=exc.detail, status=400)
    validated = dict(serializer.validated_data)
    if what == "judgments":
        return files.judgments_export(project=project, extension=name.rsplit(".", 1)[1], query=validated)
    return files.preferences_export(project=project, query=validated)


def _render(
    model_admin: Any,
    request: HttpRequest,
    project: Project,
    *,
    form: UploadForm | None = None,
    refusal: ServiceError | None = None,
    export_errors: Any = None,
    status: int = 200,
) -> HttpResponse:
    kinds = [kind for kind, perm in UPLOAD_PERMISSIONS.items() if request.user.has_perm(perm)]
    errors = list(refusal.extra.get("errors", [])) if refusal is not None else []
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "project": project,
        "title": f"Files of {project.name}",
        "form": form if form is not None else UploadForm(kinds=kinds),
        "can_upload": bool(kinds),
        "can_export": request.user.has_perm(EXPORT_PERMISSION),
        "limit_bytes": upload_limit(),
        "refusal": refusal,
        "errors": errors[:ERRORS_SHOWN],
        "errors_left_out": max(0, len(errors) - ERRORS_SHOWN),
        "export_errors": export_errors,
        "export_url": reverse("admin:annotation_project_export", args=[project.pk]),
        "values": {key: request.GET.get(key, "") for key in (*_FILTERS, "raw")},
    }
    return TemplateResponse(request, "admin/annotation/project/files.html", context, status=status)
