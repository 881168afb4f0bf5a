"""Usernames are one name whatever their case: `rater2` and `Rater2` cannot both exist.

The database holds it (a unique index on UPPER(username), migration web 0002); this module is what the
creation paths ask first, so that they refuse a look-alike with a sentence rather than an IntegrityError,
and what the system check reports when look-alikes made before the index exist (they are never merged
silently: which account keeps its judgments is the admin's decision).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core import checks
from django.db import DatabaseError
from django.db.models import Count
from django.db.models.functions import Upper

INDEX_NAME = "auth_user_username_upper_uniq"


def lookalike_taken(username: str, *, exclude_pk: Any = None) -> str | None:
    """The existing username that differs from ``username`` only in case (or equals it), if any."""
    users = get_user_model().objects.filter(username__iexact=username)
    if exclude_pk is not None:
        users = users.exclude(pk=exclude_pk)
    return users.values_list("username", flat=True).first()


def lookalike_message(username: str, existing: str) -> str:
    if existing == username:
        return f"A user named {username!r} already exists."
    return (
        f"A user named {existing!r} already exists; usernames that differ only in case are the same name. "
        "Choose another."
    )


def lookalike_groups(users: Any = None) -> list[list[str]]:
    """Every set of usernames that differ only in case, each sorted, in order of their upper-case form."""
    users = get_user_model().objects if users is None else users
    upper = users.annotate(upper=Upper("username"))
    clashes = upper.values("upper").annotate(n=Count("pk")).filter(n__gt=1).values_list("upper", flat=True)
    groups: dict[str, list[str]] = {}
    for name, key in (
        upper.filter(upper__in=list(clashes)).order_by("username").values_list("username", "upper")
    ):
        groups.setdefault(key, []).append(name)
    return [groups[key] for key in sorted(groups)]


def check_lookalike_usernames(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """`manage.py check` (and every command that runs the checks) lists usernames that differ only in case."""
    try:
        groups = lookalike_groups()
    except DatabaseError:
        return []  # no database yet, or not migrated: nothing to compare
    return [
        checks.Warning(
            f"Usernames that differ only in case: {', '.join(repr(name) for name in group)}.",
            hint="They are one name to Pairwise: rename all but one (admin, Users) so that the "
            "case-insensitive unique index (migration web 0002) can be created; nothing is merged "
            "automatically.",
            id="web.W001",
        )
        for group in groups
    ]
