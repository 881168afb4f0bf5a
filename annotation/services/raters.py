"""Writes on raters: accounts, and who rates in which project."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Field
from django.utils import timezone

from annotation.models import Assignment, AssignmentStatus, Membership, Project, Rater
from web import usernames
from web.errors import Invalid, NotFound

from .engine.counters import pair_open, rater_finished_add


def rater_get_or_create(*, user: Any) -> Rater:
    rater, _ = Rater.objects.get_or_create(user=user)
    return rater


@transaction.atomic
def rater_create(*, username: str, password: str, email: str = "") -> Any:
    """Create a rater account (not staff). Usernames and passwords go through Django's validators."""
    user_model = get_user_model()
    # As create_user stores it, so that the duplicate check looks for the name that would be stored.
    username = user_model.normalize_username(username)
    errors = []
    if not username:
        errors.append({"field": "username", "message": "This field is required."})
    else:
        try:
            # The username field's validators: Django's username_validator (letters, digits and
            # @.+-_ only) and its max_length, which the database would otherwise refuse with a 500.
            field = cast("Field[Any, Any]", user_model._meta.get_field(user_model.USERNAME_FIELD))
            field.run_validators(username)
        except ValidationError as exc:
            errors.extend({"field": "username", "message": message} for message in exc.messages)
        else:
            existing = usernames.lookalike_taken(username)
            if existing is not None:
                errors.append(
                    {"field": "username", "message": usernames.lookalike_message(username, existing)}
                )
    try:
        validate_password(password, user_model(username=username, email=email))
    except ValidationError as exc:
        errors.extend({"field": "password", "message": message} for message in exc.messages)
    if errors:
        raise Invalid("The rater could not be created.", errors=errors)
    try:
        with transaction.atomic():
            user = user_model.objects.create_user(username=username, password=password, email=email)
    except IntegrityError:
        # Another request created the same name, in some case, since the look-up: the unique index holds.
        existing = usernames.lookalike_taken(username) or username
        message = usernames.lookalike_message(username, existing)
        raise Invalid(
            "The rater could not be created.", errors=[{"field": "username", "message": message}]
        ) from None
    rater_get_or_create(user=user)
    return user


@transaction.atomic
def project_raters_add(*, project: Project, usernames: list[str]) -> list[str]:
    """Add users to a project as raters; all or nothing. Returns the usernames newly added."""
    users = {u.get_username(): u for u in get_user_model().objects.filter(username__in=usernames)}
    unknown = [name for name in usernames if name not in users]
    if unknown:
        raise Invalid(
            "Unknown usernames.",
            errors=[{"field": "usernames", "message": f"No user named {name!r}."} for name in unknown],
        )
    added = []
    for name in dict.fromkeys(usernames):
        _, created = Membership.objects.get_or_create(project=project, user=users[name])
        rater_get_or_create(user=users[name])
        if created:
            added.append(name)
    return added


@transaction.atomic
def project_rater_remove(*, project: Project, username: str, now: datetime | None = None) -> None:
    """Remove a rater from a project. Their judgments stay; the place they held goes back to the pool."""
    deleted, _ = Membership.objects.filter(project=project, user__username=username).delete()
    if not deleted:
        raise NotFound(f"{username!r} is not a rater in {project.slug!r}.")
    # Locked with its pair (as every change of an assignment's status, engine.counters), in one
    # statement, which locks the rows in the order of the engine's own read of an assignment.
    held = list(
        Assignment.objects.filter(
            project=project, rater__user__username=username, status=AssignmentStatus.ACTIVE
        )
        .select_related("pair")
        .only("rater_id", "pair__gold", "pair__judgment_count", "pair__extra_judgments")
        .select_for_update(of=("self", "pair"))
    )
    for assignment in held:
        Assignment.objects.filter(pk=assignment.pk).update(
            status=AssignmentStatus.EXPIRED, finished_at=now or timezone.now()
        )
        if pair_open(assignment.pair, project):
            rater_finished_add(project_id=project.pk, rater_id=assignment.rater_id)
