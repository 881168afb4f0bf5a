"""Celery beat's scheduler: django-celery-beat's database scheduler, which lets admins edit schedules in the
admin, except that the entries of settings.CELERY_BEAT_SCHEDULE are only written when missing.

django-celery-beat's own scheduler writes them over the database rows at every start, so an admin's
change to an interval (or a disabled entry) would come back at the next restart of beat.
"""

from __future__ import annotations

from typing import Any

from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler


class Scheduler(DatabaseScheduler):
    def update_from_dict(self, mapping: dict[str, Any]) -> None:
        existing = set(PeriodicTask.objects.filter(name__in=list(mapping)).values_list("name", flat=True))
        super().update_from_dict({name: entry for name, entry in mapping.items() if name not in existing})
