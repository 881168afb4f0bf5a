"""Usernames unique whatever their case: a unique index on UPPER(username) of auth_user.

In the web app because auth's User is Django's model (no Meta of ours to hold a constraint) and web is the
site-wide app. UPPER, as Django's `username__iexact` compares on PostgreSQL, so the index serves the
creation paths' look-up too. An index cannot be made while look-alikes exist, and merging accounts would
move judgments between people, so the migration stops, naming them, and changes nothing: the admin
renames them (`manage.py check` lists them too) and runs migrate again.
"""

from django.core.management.base import CommandError
from django.db import migrations

from web.usernames import INDEX_NAME, lookalike_groups


def create_index(apps, schema_editor):
    groups = lookalike_groups(apps.get_model("auth", "User").objects.using(schema_editor.connection.alias))
    if groups:
        listed = "; ".join(", ".join(group) for group in groups)
        raise CommandError(
            f"Usernames that differ only in case exist ({listed}). Rename all but one of each (admin, Users), "
            "then run migrate again; nothing was changed."
        )
    schema_editor.execute(f'CREATE UNIQUE INDEX "{INDEX_NAME}" ON "auth_user" (UPPER("username"))')


def drop_index(apps, schema_editor):
    schema_editor.execute(f'DROP INDEX "{INDEX_NAME}"')


class Migration(migrations.Migration):
    dependencies = [
        ("web", "0001_login_failures"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_index, drop_index)]
