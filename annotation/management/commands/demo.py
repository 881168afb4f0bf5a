"""Build a demo project with pairs written for it, a demo rater and a demo admin, and print the logins."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation import services
from annotation.models import Project
from web import usernames

DEMO_PAIRS = Path(__file__).resolve().parents[2] / "demo_pairs.jsonl"
INSTRUCTIONS = """Read the prompt, then both responses. Pick the response that is **more helpful, honest
and harmless** for the person who asked. Choose *tie* only when neither is better.
Skip a pair you cannot judge."""


class Command(BaseCommand):
    help = "Create (or refresh) the demo project, a demo rater and a demo admin, and print their logins."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--slug", default="demo")
        parser.add_argument("--password", help="The demo rater's password (default: a new random one).")
        parser.add_argument("--admin-password", help="The demo admin's password (default: a new random one).")

    @transaction.atomic
    def handle(
        self, *args: Any, slug: str, password: str | None, admin_password: str | None, **options: Any
    ) -> None:
        # Each user its own password: whoever is handed the rater's login must not hold the admin's.
        passwords = {
            "demo-admin": admin_password or secrets.token_urlsafe(12),
            "demo-rater": password or secrets.token_urlsafe(9),
        }
        project, _ = Project.objects.get_or_create(
            slug=slug,
            defaults={
                "name": "Demo: helpfulness",
                "instructions": INSTRUCTIONS,
                "judgments_per_pair": 2,
                "strength_levels": 3,
                "gold_fraction": 0.1,
            },
        )
        items = [json.loads(line) for line in DEMO_PAIRS.read_text().splitlines() if line.strip()]
        result = services.pairs_import(project=project, items=items)
        users = get_user_model().objects
        logins = []
        for username, staff in (("demo-admin", True), ("demo-rater", False)):
            existing = usernames.lookalike_taken(username)
            if existing not in (None, username):
                # Its name in another case is the same name (web 0002): neither promote nor reset another's
                # account, nor reach the unique index as a "database error".
                raise CommandError(
                    f"{usernames.lookalike_message(username, existing)} Rename that user (admin, Users) or "
                    "delete it, then run the demo again."
                )
            user, _ = users.get_or_create(username=username, defaults={"email": f"{username}@example.org"})
            user.is_staff = user.is_superuser = staff
            user.set_password(passwords[username])
            user.save()
            logins.append((username, staff))
        services.project_raters_add(project=project, usernames=["demo-rater"])
        self.stdout.write(
            f"Demo project {project.slug!r}: {result.created} pairs added, {result.unchanged} already there."
        )
        for username, staff in logins:
            role = "admin (staff)" if staff else "rater"
            self.stdout.write(f"  {role:14} username: {username:11} password: {passwords[username]}")
