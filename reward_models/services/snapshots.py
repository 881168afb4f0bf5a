"""Dataset snapshots: the judgments export of a project written to a file, exactly the bytes that
GET /api/v1/projects/{slug}/export/judgments.jsonl returns for the same filters."""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import Count, Max

from annotation.models import Project
from annotation.selectors import project_data_version
from annotation.selectors.exports import ExportFilter, judgment_lines, judgments_for_export

from .. import files
from ..models import DatasetSnapshot, SnapshotReason


def snapshot_create(
    *,
    project: Project,
    filters: ExportFilter | None = None,
    reason: str = SnapshotReason.MANUAL,
    only_if_new: bool = False,
    reuse: bool = False,
) -> DatasetSnapshot | None:
    """Write the project's judgments (as the export endpoint gives them) to a new snapshot file.

    ``only_if_new``: return None, writing nothing, when the latest snapshot of the project with the same
    filters holds the same data (the project's data version), so the periodic export writes a file
    only when there is something new. ``reuse``: return that latest snapshot instead, so that runs
    started with nothing new since train on the same file rather than each writing a copy of it.
    """
    filters = filters or ExportFilter()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql" and outermost:
            # One view of the database for the counts and the COPY, whatever commits in between (inside a
            # caller's transaction, that transaction's own isolation applies).
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        summary = judgments_for_export(project=project, filters=filters).aggregate(
            rows=Count("id"), pairs=Count("pair_id", distinct=True), last=Max("id")
        )
        # A correction, a pair left out or put back change the file and no count above: the data version
        # (bumped by every write the export reads) tells whether the latest file is still the export.
        version = project_data_version(project)
        if only_if_new or reuse:
            latest = _latest(project, filters)
            if latest is not None and latest.data_version == version:
                if reuse and files.absolute(latest.file).is_file():
                    return latest
                if only_if_new:
                    return None
            if only_if_new and latest is None and summary["rows"] == 0:
                return None
        relative, size, digest = _write(project, filters)
    return DatasetSnapshot.objects.create(
        project=project,
        since=filters.since,
        until=filters.until,
        min_votes=filters.min_votes,
        reason=reason,
        file=relative,
        rows=summary["rows"],
        pairs=summary["pairs"],
        size_bytes=size,
        sha256=digest,
        last_judgment_id=summary["last"],
        data_version=version,
    )


def snapshot_filters(snapshot: DatasetSnapshot) -> ExportFilter:
    return ExportFilter(since=snapshot.since, until=snapshot.until, min_votes=snapshot.min_votes)


def _latest(project: Project, filters: ExportFilter) -> DatasetSnapshot | None:
    return (
        DatasetSnapshot.objects.filter(
            project=project, since=filters.since, until=filters.until, min_votes=filters.min_votes
        )
        .order_by("-created_at", "-id")
        .first()
    )


def _write(project: Project, filters: ExportFilter) -> tuple[str, int, str]:
    """Stream the export into a temporary file beside its final place, then rename it there whole."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = files.absolute(files.snapshot_file(project.slug, "x")).parent
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".writing-", suffix=".jsonl")
    try:
        with os.fdopen(handle, "wb") as out:
            for block in judgment_lines(project=project, filters=filters):
                out.write(block)
                digest.update(block)
                size += len(block)
        name = f"{stamp}-{digest.hexdigest()[:12]}.jsonl"
        os.replace(temporary, folder / name)
    except BaseException:
        os.unlink(temporary)
        raise
    return files.snapshot_file(project.slug, name), size, digest.hexdigest()
