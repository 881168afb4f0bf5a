#!/usr/bin/env python
"""Django's command-line utility for Pairwise.

Errors a user fixes outside the code come out as one or two lines, not a traceback: a bad environment
variable (exit 2), a database that is missing, down or not migrated, or that refused the data (exit 1).
`--traceback` shows the whole trace of the latter, as it does for a command's own errors.
"""

from __future__ import annotations

import os
import sys


def _one_line(error: BaseException) -> str:
    """The error's first line: psycopg and Django add hints on further lines that repeat ours."""
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def _database() -> str:
    """Which database the settings point at, in words, without its password."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite file {db['NAME']}"
    return f"PostgreSQL {db.get('NAME')} on {db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError, DataError, IntegrityError

    try:
        settings.INSTALLED_APPS  # noqa: B018 -- loads config/settings.py, which checks every variable
    except ImproperlyConfigured as error:
        # Django would go on without settings and fail later with a traceback that hides this message.
        sys.stderr.write(f"Configuration error: {' '.join(str(error).split())}\n")
        sys.exit(2)

    try:
        execute_from_command_line(sys.argv)
    except DatabaseError as error:
        if "--traceback" in sys.argv:
            raise
        if isinstance(error, IntegrityError | DataError):
            # The database answered: it refused the data (a unique name, a rule of a table), which no
            # restart or migrate fixes, so the hint below would send the user the wrong way.
            sys.stderr.write(
                f"Database error: {type(error).__name__}: {_one_line(error)}\n"
                "The database refused the data (one of its rules); add --traceback for the details.\n"
            )
            sys.exit(1)
        sys.stderr.write(
            f"Database error: {type(error).__name__}: {_one_line(error)}\n"
            f"Check that the database ({_database()}) is running and migrated (python manage.py migrate; "
            "scripts/start does both), or add --traceback for the details.\n"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
