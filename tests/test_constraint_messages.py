"""Every database constraint that an admin form can break says what is wrong in words: one without its own
message shows as 'Constraint "name" is violated.' in the admin."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import BaseConstraint, Q
from django.test import RequestFactory

# Their field is a choice the form checks first, so the constraint is never what refuses a form.
CHOICE_FIELDS_ONLY = {"project_rationale_mode", "pair_gold_choice", "project_selection_valid"}


def _fields_of(condition: Q) -> set[str]:
    """The model fields a condition reads (its lookups' first parts), through nested Q objects."""
    fields: set[str] = set()
    for child in condition.children:
        if isinstance(child, Q):
            fields |= _fields_of(child)
        elif isinstance(child, tuple):
            fields.add(child[0].split("__")[0])
    return fields


def _form_fields(model_admin, request) -> set[str]:
    form = model_admin.get_form(request, None)
    return set(form.base_fields) - set(model_admin.get_readonly_fields(request, None))


def test_every_constraint_an_admin_form_can_break_has_a_message():
    request = RequestFactory().get("/admin/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    default = BaseConstraint.default_violation_error_message
    missing = []
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in ("annotation", "reward_models"):
            continue
        # A change page of its own (a training run's page) has no model form.
        change_form = type(model_admin).change_view is admin.ModelAdmin.change_view
        if not (
            model_admin.has_add_permission(request)
            or (change_form and model_admin.has_change_permission(request))
        ):
            continue
        editable = _form_fields(model_admin, request)
        for constraint in model._meta.constraints:
            if constraint.name in CHOICE_FIELDS_ONLY or constraint.violation_error_message != default:
                continue
            fields = set(getattr(constraint, "fields", ()) or ())
            condition = getattr(constraint, "condition", None)
            if isinstance(condition, Q):
                fields |= _fields_of(condition)
            if fields & editable:
                missing.append(f"{model.__name__}.{constraint.name}")
    assert missing == []
