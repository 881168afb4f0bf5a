"""Judgments made elsewhere (other tools, public data sets): all or nothing, one per (pair, rater).

Imported raters are Raters without a user, named by the source's id within the project; they cannot log
in and appear in exports under their pseudonym only. Imported judgments count toward a pair's quota and
may exceed it (history is kept as it was); the engine then never serves a pair they filled.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotation.models import MAX_RATIONALE, Choice, Judgment, Pair, Project, Rater, Side
from rm_training import jsonl
from web.errors import Conflict, items_invalid, too_many_items

from .bulk import tables_analyze
from .engine.counters import pairs_counted

_FIELDS = {"pair", "rater", "choice", "strength", "rationale", "shown_left", "created_at"}
_MAX_ID = 200


@dataclass(frozen=True)
class JudgmentImportResult:
    created: int
    raters_created: int


def _item_errors(index: int, item: Any, project: Project) -> list[dict[str, Any]]:
    if not isinstance(item, dict):
        return [{"index": index, "field": None, "message": "Each item must be a JSON object."}]
    errors: list[dict[str, Any]] = []

    def error(field: str | None, message: str) -> None:
        errors.append({"index": index, "field": field, "message": message})

    for field in sorted(set(item) - _FIELDS):
        error(field, f"Unknown field {field!r}; allowed: {', '.join(sorted(_FIELDS))}.")
    for field in ("pair", "rater"):
        value = item.get(field)
        if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID:
            error(field, f"Required: a non-empty string of at most {_MAX_ID} characters.")
    choice = item.get("choice")
    if choice not in Choice.values:
        error("choice", 'Required: "a", "b" or "tie".')
    strength = item.get("strength")
    if strength is not None:
        levels = project.strength_levels
        if choice == Choice.TIE:
            error("strength", "A tie has no strength.")
        elif levels == 0:
            error("strength", "This project does not record strength.")
        elif isinstance(strength, bool) or not isinstance(strength, int) or not 1 <= strength <= levels:
            error("strength", f"Must be a whole number from 1 to {levels}.")
    rationale = item.get("rationale")
    if rationale is not None and (not isinstance(rationale, str) or len(rationale) > MAX_RATIONALE):
        error("rationale", f"Must be a string of at most {MAX_RATIONALE} characters (as a rater's is).")
    if item.get("shown_left") is not None and item["shown_left"] not in Side.values:
        error("shown_left", 'Must be "a" or "b".')
    created_at = item.get("created_at")
    if created_at is not None and _parse_time(created_at) is None:
        error(
            "created_at",
            "Must be an ISO 8601 time with a time zone, in years 1 to 9999 in UTC, "
            "such as 2026-11-30T09:15:00Z.",
        )
    for path, message in jsonl.text_problems(item):
        error(jsonl.dotted(path), message[0].upper() + message[1:] + ".")
    return errors


def _parse_time(value: Any) -> datetime | None:
    """An aware time that stays within years 1 to 9999 in UTC (what every database and export can hold):
    "9999-12-31T23:59:59-14:00" is year 10000 in UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
        if parsed is None or not timezone.is_aware(parsed):
            return None
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def judgments_import(
    *, project: Project, items: list[Any], now: datetime | None = None, max_items: int | None = None
) -> JudgmentImportResult:
    """Import judgments, all or nothing; every bad item is reported with its index. ``max_items`` as for
    pairs_import."""
    if max_items is not None and len(items) > max_items:
        raise too_many_items(len(items), max_items)
    errors = [e for index, item in enumerate(items) for e in _item_errors(index, item, project)]
    # The items that pass on their own are checked against the project too, so one answer lists every
    # problem, not the next one only after the first is fixed.
    faulty = {e["index"] for e in errors}
    errors += _reference_errors(project, [(i, item) for i, item in enumerate(items) if i not in faulty])
    if errors:
        raise items_invalid(sorted(errors, key=lambda e: e["index"]), len(items))
    now = now or timezone.now()
    try:
        with transaction.atomic():
            result = _store(project, items, now)
    except IntegrityError:
        raise Conflict(
            "Another import or rating of the same (pair, rater) happened at the same time; nothing was "
            "stored. Retry.",
            code="import_conflict",
        ) from None
    tables_analyze(
        tables=[Judgment._meta.db_table, Pair._meta.db_table, Rater._meta.db_table], rows=result.created
    )
    return result


def _reference_errors(project: Project, indexed: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Unknown pairs, and (pair, rater) judged twice: in this request or already in the project."""
    items = [item for _, item in indexed]
    pairs = dict(
        Pair.objects.filter(project=project, external_id__in={i["pair"] for i in items}).values_list(
            "external_id", "pk"
        )
    )
    already = set(
        Judgment.objects.filter(
            project=project, rater__imported_into=project, rater__source_id__in={i["rater"] for i in items}
        ).values_list("pair__external_id", "rater__source_id")
    )
    errors = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in indexed:
        pair, rater = key = (item["pair"], item["rater"])
        if pair not in pairs:
            errors.append({"index": index, "field": "pair", "message": f"No pair with external_id {pair!r}."})
        elif key in seen:
            message = f"{rater!r} judges {pair!r} twice (first at item {seen[key]})."
            errors.append({"index": index, "field": "rater", "message": message})
        elif key in already:
            message = f"{rater!r} already has a judgment of {pair!r} in this project."
            errors.append({"index": index, "field": "rater", "message": message})
        seen.setdefault(key, index)
    return errors


def _store(project: Project, items: list[dict[str, Any]], now: datetime) -> JudgmentImportResult:
    # Lock order everywhere: pairs first (in id order, so two imports never deadlock), as the engine does;
    # their longer response read under the lock (an unjudged pair's texts may change until then).
    locked = (
        Pair.objects.select_for_update()
        .filter(project=project, external_id__in={i["pair"] for i in items})
        .order_by("pk")
        .values_list("external_id", "pk", "longer")
    )
    pairs = {external_id: (pk, longer) for external_id, pk, longer in locked}
    pair_ids = [pk for pk, _ in pairs.values()]  # in pk order, as locked
    # The pairs' new judgment counts may close them: counted before and after, with the raters' judgments.
    with pairs_counted(project=project, pair_ids=pair_ids) as counted:
        source_ids = sorted({i["rater"] for i in items})
        known = dict(
            Rater.objects.filter(imported_into=project, source_id__in=source_ids).values_list(
                "source_id", "pk"
            )
        )
        new_raters = [Rater(imported_into=project, source_id=s) for s in source_ids if s not in known]
        for rater in Rater.objects.bulk_create(new_raters):
            known[rater.source_id or ""] = rater.pk
        Judgment.objects.bulk_create(
            [
                Judgment(
                    project=project,
                    pair_id=pairs[item["pair"]][0],
                    pair_longer=pairs[item["pair"]][1],
                    rater_id=known[item["rater"]],
                    choice=item["choice"],
                    strength=item.get("strength"),
                    rationale=item.get("rationale") or "",
                    shown_left=item.get("shown_left"),
                    created_at=_parse_time(item.get("created_at")) or now,
                )
                for item in items
            ],
            batch_size=2000,
        )
        # Each pair's count again from its rows: the pairs are locked, so no engine judgment races this.
        counts = (
            Judgment.objects.filter(pair=OuterRef("pk")).order_by().values("pair").annotate(n=Count("pk"))
        )
        Pair.objects.filter(pk__in=pair_ids).update(judgment_count=Subquery(counts.values("n")))
        done = Counter(known[item["rater"]] for item in items)
        counted.extend((rater, n, 0) for rater, n in done.items())
    return JudgmentImportResult(created=len(items), raters_created=len(new_raters))
