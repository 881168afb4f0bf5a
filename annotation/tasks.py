"""Celery tasks of the annotation app: thin adapters over services."""

from __future__ import annotations

from celery import shared_task

from . import services


# Late acknowledgement: closing stale leases twice changes nothing, and it takes milliseconds.
@shared_task(name="annotation.tasks.leases_expire", acks_late=True)
def leases_expire() -> int:
    return services.leases_expire()
