"""Pair import: all or nothing, idempotent by external_id and content. A prompt is a string or a
conversation (rm_training.conversation, whose checks and words the API, the command and the trainer share);
rows of other tools (TRL, HH-RLHF) are read into pair items there first."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count

from annotation.models import Assignment, AssignmentStatus, Choice, Judgment, Pair, Project
from rm_training import conversation, jsonl
from web.errors import Conflict, items_invalid, too_many_items

from .bulk import tables_analyze
from .engine.counters import pairs_added, pairs_counted

_PAIR_FIELDS = {"prompt", "response_a", "response_b", "external_id", "model_a", "model_b", "metadata", "gold"}
_MAX_SHORT = 200


@dataclass(frozen=True)
class ImportResult:
    created: int
    unchanged: int


def _pair_content_sha256(item: dict[str, Any]) -> str:
    canonical = {field: item.get(field) for field in sorted(_PAIR_FIELDS - {"external_id"})}
    # A conversation's messages (role and content only) are its identity; a plain prompt and a lone user
    # message holding it are the same pair, and hash as plain prompts always have.
    text, messages = conversation.normalize(item["prompt"])
    canonical["prompt"] = text if messages is None else messages
    canonical["model_a"] = canonical["model_a"] or ""
    canonical["model_b"] = canonical["model_b"] or ""
    canonical["metadata"] = canonical["metadata"] or {}
    blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _pair_item_errors(index: int, item: Any) -> list[dict[str, Any]]:
    if not isinstance(item, dict):
        return [{"index": index, "field": None, "message": "Each item must be a JSON object."}]
    errors = []

    def error(field: str | None, message: str) -> None:
        errors.append({"index": index, "field": field, "message": message})

    for field in sorted(set(item) - _PAIR_FIELDS):
        error(field, f"Unknown field {field!r}; allowed: {', '.join(sorted(_PAIR_FIELDS))}.")
    for where, message in conversation.prompt_problems(item.get("prompt")):
        error(f"prompt.{where}" if where else "prompt", _sentence(message))
    # A response may be empty: a model that said nothing is judged too (the rater pages mark it).
    for field in ("response_a", "response_b"):
        if not isinstance(item.get(field), str):
            error(field, "Required: a string (it may be empty).")
    if isinstance(item.get("response_a"), str) and item.get("response_a") == item.get("response_b"):
        error("response_b", "response_a and response_b are the same text.")
    for path, message in jsonl.text_problems(item):
        error(jsonl.dotted(path), _sentence(message))
    for field in ("external_id", "model_a", "model_b"):
        value = item.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > _MAX_SHORT):
            error(field, f"Must be a string of at most {_MAX_SHORT} characters.")
    if isinstance(item.get("external_id"), str) and not item["external_id"].strip():
        error("external_id", "Must not be empty or blank (leave it out instead).")
    if item.get("metadata") is not None and not isinstance(item["metadata"], dict):
        error("metadata", "Must be a JSON object.")
    if item.get("gold") is not None and item["gold"] not in Choice.values:
        error("gold", 'Must be "a", "b" or "tie".')
    return errors


def _sentence(message: str) -> str:
    """rm_training's wording (lower case, no stop) as the API's sentences."""
    return message[0].upper() + message[1:] + "."


# In the errors of a TRL or HH-RLHF row, the pair's fields under the row's names.
_ROW_NAMES = {"response_a": "chosen", "response_b": "rejected"}


def _rows_to_items(rows: list[Any], fmt: conversation.Format) -> tuple[list[Any], list[dict[str, Any]]]:
    """TRL or HH-RLHF rows as pair items: response_a is the row's chosen, response_b its rejected, and the
    row's preference is kept in metadata ({"format", "preferred": "a", "row": {its other fields}}), not as a
    judgment: a project collects its own. Returns the items and the rows' errors."""
    items: list[Any] = []
    errors: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        try:
            prompt, chosen, rejected = conversation.pair_from_row(row, fmt)
        except conversation.RowError as exc:
            errors.extend(
                {"index": index, "field": field or None, "message": _sentence(message)}
                for field, message in exc.problems
            )
            items.append(None)
            continue
        metadata: dict[str, Any] = {"format": fmt, "preferred": "a"}
        others = {k: v for k, v in row.items() if k not in conversation.ROW_FIELDS}
        if others:
            metadata["row"] = others
        items.append({"prompt": prompt, "response_a": chosen, "response_b": rejected, "metadata": metadata})
    return items, errors


def pairs_import(
    *,
    project: Project,
    items: list[Any],
    max_items: int | None = None,
    format: conversation.Format = "pairs",  # the name of the API's parameter
) -> ImportResult:
    """Import pairs, all or nothing. A known external_id with the same content is `unchanged`; with other
    content it is an error, since judgments may already refer to the pair. ``max_items``: refuse more than
    this many (413): the API's per-request limit; a command importing a file has none. ``format``: the
    items are pairs, or TRL or HH-RLHF preference rows (see :func:`_rows_to_items`)."""
    if max_items is not None and len(items) > max_items:
        raise too_many_items(len(items), max_items)
    errors: list[dict[str, Any]] = []
    if format != "pairs":
        items, errors = _rows_to_items(items, format)
    for index, item in enumerate(items):
        if item is None:
            continue
        for problem in _pair_item_errors(index, item):
            if format != "pairs":
                problem["field"] = _ROW_NAMES.get(problem["field"], problem["field"])
            errors.append(problem)
    if errors:
        raise items_invalid(sorted(errors, key=lambda e: e["index"]), len(items))

    hashes = [_pair_content_sha256(item) for item in items]
    external_ids = [item.get("external_id") for item in items]
    seen: dict[str, int] = {}
    for index, external_id in enumerate(external_ids):
        if external_id is None:
            continue
        if external_id in seen:
            errors.append(
                {
                    "index": index,
                    "field": "external_id",
                    "message": f"{external_id!r} appears twice in this request "
                    f"(first at item {seen[external_id]}).",
                }
            )
        seen.setdefault(external_id, index)
    existing = dict(
        Pair.objects.filter(project=project, external_id__in=list(seen)).values_list(
            "external_id", "content_sha256"
        )
    )
    # An item without an external_id is known by its content: the same pair imported again (in this
    # request or an earlier one) is unchanged, not a duplicate that raters would judge twice.
    anonymous = [h for item, h in zip(items, hashes, strict=True) if item.get("external_id") is None]
    known_contents = set(
        Pair.objects.filter(project=project, content_sha256__in=anonymous).values_list(
            "content_sha256", flat=True
        )
    )
    new_pairs = []
    unchanged = 0
    for index, (item, content_sha256) in enumerate(zip(items, hashes, strict=True)):
        external_id = item.get("external_id")
        if external_id is None:
            if content_sha256 in known_contents:
                unchanged += 1
                continue
            known_contents.add(content_sha256)
        elif external_id in existing:
            if existing[external_id] == content_sha256:
                unchanged += 1
            else:
                errors.append(
                    {
                        "index": index,
                        "field": "external_id",
                        "message": f"A pair {external_id!r} already exists in this project "
                        "with other content.",
                    }
                )
            continue
        prompt, messages = conversation.normalize(item["prompt"])
        new_pairs.append(
            Pair(
                project=project,
                external_id=external_id,
                prompt=prompt,
                messages=messages,
                response_a=item["response_a"],
                response_b=item["response_b"],
                model_a=item.get("model_a") or "",
                model_b=item.get("model_b") or "",
                metadata=item.get("metadata") or {},
                gold=item.get("gold"),
                content_sha256=content_sha256,
            )
        )
    if errors:
        raise items_invalid(errors, len(items))
    gold = sum(1 for pair in new_pairs if pair.gold is not None)
    try:
        with transaction.atomic():
            Pair.objects.bulk_create(new_pairs, batch_size=1000)
            pairs_added(project_id=project.pk, regular=len(new_pairs) - gold, gold=gold)
    except IntegrityError:
        raise Conflict(
            "Another import added some of these external_ids at the same time; nothing was stored. Retry.",
            code="import_conflict",
        ) from None
    tables_analyze(tables=[Pair._meta.db_table], rows=len(new_pairs))
    return ImportResult(created=len(new_pairs), unchanged=unchanged)


# What a pair's form may change; the rest (its judgment count, extra judgments, left_out, priority) is the
# engine's and the review's, written under the pair's row lock, never from a form's copy of the row.
_FORM_FIELDS = [f.attname for f in Pair._meta.concrete_fields if f.editable and not f.primary_key]
# What raters see and judge: fixed once a rater holds or has judged the pair.
_TEXTS = ("prompt", "messages", "response_a", "response_b")


@transaction.atomic
def pair_save(*, pair: Pair, adding: bool) -> Pair:
    """Save a pair written outside the import (the admin's form), its counters adjusted: a changed pair
    is counted out as it was and in as it is now. Its texts cannot change once a rater holds or has judged
    it (Conflict): a judgment refers to the texts its rater saw (and copies which response is longer);
    its gold answer, model names, metadata and external id may."""
    try:
        if adding:
            pair.save()
            pairs_added(
                project_id=pair.project_id, regular=int(pair.gold is None), gold=int(pair.gold is not None)
            )
        else:
            _refuse_text_change(pair)
            with pairs_counted(project=pair.project, pair_ids=[pair.pk]):
                pair.save(update_fields=_FORM_FIELDS)
    except IntegrityError:
        # The form checks the external id; another save took it in between.
        raise Conflict(
            "This project already has a pair with this external id.", code="external_id_taken"
        ) from None
    return pair


def _refuse_text_change(pair: Pair) -> None:
    """Conflict when the pair's texts differ from its row's while a rater holds or has judged it (under the
    pair's row lock, which the engine takes to serve it and to record a judgment)."""
    stored = Pair.objects.select_for_update().filter(pk=pair.pk).values(*_TEXTS, "judgment_count").first()
    if stored is None or all(getattr(pair, field) == stored[field] for field in _TEXTS):
        return
    if stored["judgment_count"]:
        raise Conflict(
            "This pair was judged while you edited it; a judged pair's texts cannot change. "
            "Nothing was saved.",
            code="pair_judged",
        )
    held = (
        Assignment.objects.filter(pair_id=pair.pk, status=AssignmentStatus.ACTIVE)
        .order_by("-lease_expires_at")
        .values_list("lease_expires_at", flat=True)
        .first()
    )
    if held is not None:
        raise Conflict(
            f"A rater holds this pair (their lease runs until {held:%H:%M:%S} UTC and is closed within "
            "5 minutes after, unless they judge or skip it first): its texts cannot change while they may "
            "be judging them. Nothing was saved.",
            code="pair_held",
        )


@transaction.atomic
def pairs_delete(*, pairs: Iterable[Pair]) -> None:
    """Delete pairs (the admin), their assignments and judgments with them, counted out first."""
    by_project: dict[int, list[Pair]] = {}
    for pair in pairs:
        by_project.setdefault(pair.project_id, []).append(pair)
    for project_pairs in by_project.values():
        ids = sorted(pair.pk for pair in project_pairs)
        list(Pair.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))
        project = project_pairs[0].project
        with pairs_counted(project=project, pair_ids=ids) as counted:
            # Their judgments go with them: no longer done by their raters.
            judged = Judgment.objects.filter(pair_id__in=ids).values("rater_id").annotate(n=Count("pk"))
            counted.extend((row["rater_id"], -row["n"], 0) for row in judged)
            Pair.objects.filter(pk__in=ids).delete()
