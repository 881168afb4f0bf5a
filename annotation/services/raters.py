"""Writes on raters: accounts, and who rates in which project."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Field, Value
from django.db.models.functions import Upper
from django.utils import timezone

from annotation.models import Assignment, AssignmentStatus, Membership, Project, Rater
from rm_training import jsonl
from web import usernames
from web.errors import Invalid, NotFound

from .engine.counters import assignments_expired


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
    """Add users to a project as raters; all or nothing. A username is one name whatever its case (as at
    login: `RD` names the user `rd`). Returns the usernames newly added, as the accounts spell them."""
    user_model = get_user_model()
    field = "name_upper"
    nameable = [name for name in usernames if _nameable(name)]
    found = user_model.objects.annotate(**{field: Upper(user_model.USERNAME_FIELD)}).filter(
        **{f"{field}__in": [Upper(Value(name)) for name in nameable]}
    )
    users = {getattr(user, field): user for user in found}
    uppers = _uppers(nameable)
    unknown = [name for name in usernames if uppers.get(name) not in users]
    if unknown:
        raise Invalid(
            "Unknown usernames.",
            errors=[{"field": "usernames", "message": f"No user named {name!r}."} for name in unknown],
        )
    added = []
    for user in dict.fromkeys(users[uppers[name]] for name in usernames):
        _, created = Membership.objects.get_or_create(project=project, user=user)
        rater_get_or_create(user=user)
        if created:
            added.append(user.get_username())
    return added


def _nameable(name: str) -> bool:
    """Whether an account could bear the name: text PostgreSQL cannot hold (a NUL, a lone surrogate;
    rm_training.jsonl says which, for every body too) names nobody, and a query that looked it up would be
    refused by the database (a 500). The API's bodies are checked by their parser; a URL's name is not."""
    return not any(jsonl.text_problems(name))


def _uppers(names: list[str]) -> dict[str, str]:
    """Each name in upper case as the database writes it (its UPPER, which the unique index of usernames
    uses), so that a name matches its account exactly when the index says they are one name."""
    if not names:
        return {}
    names = list(dict.fromkeys(names))
    query = ", ".join(["UPPER(%s)"] * len(names))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {query}", names)
        return dict(zip(names, cursor.fetchone(), strict=True))


@transaction.atomic
def project_rater_remove(*, project: Project, username: str, now: datetime | None = None) -> None:
    """Remove a rater from a project. Their judgments stay; the place they held goes back to the pool."""
    memberships = Membership.objects.filter(project=project, user__username__iexact=username)
    deleted = memberships.delete()[0] if _nameable(username) else 0
    if not deleted:
        raise NotFound(f"{username!r} is not a rater in {project.slug!r}.")
    # Locked with its pair (as every change of an assignment's status, engine.counters), in one
    # statement, which locks the rows in the order of the engine's own read of an assignment.
    locked = (
        Assignment.objects.filter(
            project=project, rater__user__username__iexact=username, status=AssignmentStatus.ACTIVE
        )
        .select_related("pair")
        .only("pair__id")
        .select_for_update(of=("self", "pair"))
    )
    held = [assignment.pk for assignment in locked]
    Assignment.objects.filter(pk__in=held).update(
        status=AssignmentStatus.EXPIRED, finished_at=now or timezone.now()
    )
    assignments_expired(assignment_ids=held)
