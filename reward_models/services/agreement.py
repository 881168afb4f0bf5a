"""The raters' agreement on a snapshot's judgments, recorded on each run beside its accuracy."""

from __future__ import annotations

from typing import Any

from ..models import DatasetSnapshot


def snapshot_human_agreement(snapshot: DatasetSnapshot) -> dict[str, Any] | None:
    """The project's agreement report on the snapshot's filters, as a dict (percent_agreement,
    ceiling_accuracy, ...), or None while it cannot be computed.

    The agreement statistics (annotation.selectors.agreement.project_agreement, issue 10) are built on
    another branch; until that is merged this returns None, and the lead wires it here at merge:
    ``project_agreement(snapshot.project, filters=snapshot_filters(snapshot)).as_dict()``.
    """
    return None
