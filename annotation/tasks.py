"""Celery tasks of the annotation app: thin adapters over services."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="annotation.tasks.leases_expire")
def leases_expire() -> int:
    return services.leases_expire()
