"""Writes on projects: create and change their settings (the slug never changes)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotation.models import Project
from web.errors import Invalid

from .engine.counters import counters_recount

# The settings a project's owner may set through the API; rater_group is managed in the admin.
PROJECT_SETTINGS = (
    "name",
    "instructions",
    "judgments_per_pair",
    "allow_tie",
    "strength_levels",
    "rationale",
    "lease_seconds",
    "gold_fraction",
    "very_fast_ms",
    "correction_seconds",
    "selection",
    "selection_epsilon",
)
# The admin also sets which group of users rates the project.
PROJECT_ADMIN_SETTINGS = (*PROJECT_SETTINGS, "rater_group")


def _project_save(project: Project, *, update_fields: list[str] | None = None) -> None:
    """Validate against the model (fields, uniqueness and check constraints), then save."""
    try:
        project.full_clean()
    except ValidationError as exc:
        raise Invalid(
            "The project settings are invalid.",
            errors=[
                {"field": None if field == "__all__" else field, "message": message}
                for field, messages in exc.message_dict.items()
                for message in messages
            ],
        ) from None
    try:
        with transaction.atomic():
            project.save(update_fields=update_fields)
    except IntegrityError:
        # full_clean checked the slug, but another request may have taken it since.
        raise Invalid(
            "The project settings are invalid.",
            errors=[{"field": "slug", "message": f"A project {project.slug!r} already exists."}],
        ) from None


@transaction.atomic
def project_create(*, slug: str, name: str, **settings_: Any) -> Project:
    """Create a project; `settings_` are any of PROJECT_ADMIN_SETTINGS, the model's defaults otherwise."""
    unknown = sorted(set(settings_) - set(PROJECT_ADMIN_SETTINGS))
    if unknown:
        raise Invalid(
            "Unknown project settings.", errors=[{"field": f, "message": "Unknown."} for f in unknown]
        )
    project = Project(slug=slug, name=name, **settings_)
    _project_save(project)
    return project


@transaction.atomic
def project_update(*, project: Project, changes: dict[str, Any]) -> Project:
    """Change some of a project's PROJECT_ADMIN_SETTINGS. The slug never changes: URLs and exports use it."""
    unknown = sorted(set(changes) - set(PROJECT_ADMIN_SETTINGS))
    if unknown:
        raise Invalid(
            "These project fields cannot be changed.",
            errors=[{"field": f, "message": "Cannot be changed."} for f in unknown],
        )
    # As stored: the admin's form has already set the new values on `project`.
    quota_before = Project.objects.filter(pk=project.pk).values_list("judgments_per_pair", flat=True).get()
    for field, value in changes.items():
        setattr(project, field, value)
    if changes:
        _project_save(project, update_fields=list(changes))
    if project.judgments_per_pair != quota_before:
        # Which pairs are open changes with the quota: counted again (a rare, staff-only change).
        counters_recount(project=project)
    return project
