"""Django's createsuperuser, refusing a username that differs from an existing one only in case (or in
width: the name is stored NFKC-normalised) in words. Django's own check looks the name up as typed and
exactly, so a look-alike reached the unique index (migration web 0002) and came out as a database error.
It shadows Django's command because "web" comes before "django.contrib.auth" in INSTALLED_APPS."""

from __future__ import annotations

from django.contrib.auth.management.commands import createsuperuser

from web import usernames


class Command(createsuperuser.Command):
    # Django's hook for the name's checks, run in both modes (absent from django-stubs).
    def _validate_username(  # type: ignore[misc]
        self, username: str, verbose_field_name: str, database: str
    ) -> str | None:
        error = super()._validate_username(username, verbose_field_name, database)  # type: ignore[misc]
        if error:
            return error
        # As create_superuser will store it.
        stored = self.UserModel.normalize_username(username)
        existing = usernames.lookalike_taken(stored)
        return usernames.lookalike_message(stored, existing) if existing is not None else None
