"""Writes: raters and memberships, pair import, and the assignment engine.

The engine's guarantees (at most judgments_per_pair raters per pair, no pair twice to one rater, one
open assignment per rater and project) hold under any number of concurrent requests and server
processes: every place on a pair is taken or given back while that pair's row is locked, candidates are
picked with SELECT ... FOR UPDATE SKIP LOCKED so raters never queue behind each other, and the unique
constraints in annotation.models back the rest. On SQLite (the quickstart) transactions are IMMEDIATE,
which serialises them instead.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .errors import Conflict, Forbidden, Invalid, NotFound, TooLarge
from .models import Assignment, AssignmentStatus, Judgment, Membership, Pair, Project, Rater, RationaleMode
from .selectors import user_can_rate

# How many locked-but-full candidates one request tries before it looks again from the top.
_CLAIM_ATTEMPTS = 8


# Raters and memberships


def rater_get_or_create(*, user: Any) -> Rater:
    rater, _ = Rater.objects.get_or_create(user=user)
    return rater


@transaction.atomic
def rater_create(*, username: str, password: str, email: str = "") -> Any:
    """Create a rater account (not staff). Passwords go through Django's validators."""
    user_model = get_user_model()
    errors = []
    if not username:
        errors.append({"field": "username", "message": "This field is required."})
    elif user_model.objects.filter(username=username).exists():
        errors.append({"field": "username", "message": f"A user named {username!r} already exists."})
    try:
        validate_password(password, user_model(username=username, email=email))
    except ValidationError as exc:
        errors.extend({"field": "password", "message": message} for message in exc.messages)
    if errors:
        raise Invalid("The rater could not be created.", errors=errors)
    user = user_model.objects.create_user(username=username, password=password, email=email)
    rater_get_or_create(user=user)
    return user


@transaction.atomic
def project_raters_add(*, project: Project, usernames: list[str]) -> list[str]:
    """Add users to a project as raters; all or nothing. Returns the usernames newly added."""
    users = {u.get_username(): u for u in get_user_model().objects.filter(username__in=usernames)}
    unknown = [name for name in usernames if name not in users]
    if unknown:
        raise Invalid(
            "Unknown usernames.",
            errors=[{"field": "usernames", "message": f"No user named {name!r}."} for name in unknown],
        )
    added = []
    for name in dict.fromkeys(usernames):
        _, created = Membership.objects.get_or_create(project=project, user=users[name])
        rater_get_or_create(user=users[name])
        if created:
            added.append(name)
    return added


@transaction.atomic
def project_rater_remove(*, project: Project, username: str, now: datetime | None = None) -> None:
    """Remove a rater from a project. Their judgments stay; the place they held goes back to the pool."""
    deleted, _ = Membership.objects.filter(project=project, user__username=username).delete()
    if not deleted:
        raise NotFound(f"{username!r} is not a rater in {project.slug!r}.")
    Assignment.objects.filter(
        project=project, rater__user__username=username, status=AssignmentStatus.ACTIVE
    ).update(status=AssignmentStatus.EXPIRED, finished_at=now or timezone.now())


# Projects

# The settings a project's owner may set through the API; rater_group is managed in the admin.
PROJECT_SETTINGS = (
    "name",
    "instructions",
    "judgments_per_pair",
    "allow_tie",
    "strength_levels",
    "rationale",
    "lease_seconds",
    "gold_fraction",
)


def _project_save(project: Project, *, update_fields: list[str] | None = None) -> None:
    """Validate against the model (fields, uniqueness and check constraints), then save."""
    try:
        project.full_clean()
    except ValidationError as exc:
        raise Invalid(
            "The project settings are invalid.",
            errors=[
                {"field": None if field == "__all__" else field, "message": message}
                for field, messages in exc.message_dict.items()
                for message in messages
            ],
        ) from None
    try:
        with transaction.atomic():
            project.save(update_fields=update_fields)
    except IntegrityError:
        # full_clean checked the slug, but another request may have taken it since.
        raise Invalid(
            "The project settings are invalid.",
            errors=[{"field": "slug", "message": f"A project {project.slug!r} already exists."}],
        ) from None


@transaction.atomic
def project_create(*, slug: str, name: str, **settings_: Any) -> Project:
    """Create a project; `settings_` are any of PROJECT_SETTINGS, the model's defaults otherwise."""
    unknown = sorted(set(settings_) - set(PROJECT_SETTINGS))
    if unknown:
        raise Invalid(
            "Unknown project settings.", errors=[{"field": f, "message": "Unknown."} for f in unknown]
        )
    project = Project(slug=slug, name=name, **settings_)
    _project_save(project)
    return project


@transaction.atomic
def project_update(*, project: Project, changes: dict[str, Any]) -> Project:
    """Change some of a project's PROJECT_SETTINGS. The slug never changes: URLs and exports use it."""
    unknown = sorted(set(changes) - set(PROJECT_SETTINGS))
    if unknown:
        raise Invalid(
            "These project fields cannot be changed.",
            errors=[{"field": f, "message": "Cannot be changed."} for f in unknown],
        )
    for field, value in changes.items():
        setattr(project, field, value)
    if changes:
        _project_save(project, update_fields=list(changes))
    return project


# Pair import

_PAIR_FIELDS = {"prompt", "response_a", "response_b", "external_id", "model_a", "model_b", "metadata", "gold"}
_MAX_SHORT = 200


@dataclass(frozen=True)
class ImportResult:
    created: int
    unchanged: int


def _pair_content_sha256(item: dict[str, Any]) -> str:
    canonical = {field: item.get(field) for field in sorted(_PAIR_FIELDS - {"external_id"})}
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
    for field in ("prompt", "response_a", "response_b"):
        value = item.get(field)
        if not isinstance(value, str) or not value.strip():
            error(field, "Required: a non-empty string.")
    if isinstance(item.get("response_a"), str) and item.get("response_a") == item.get("response_b"):
        error("response_b", "response_a and response_b are the same text.")
    for field in ("external_id", "model_a", "model_b"):
        value = item.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > _MAX_SHORT):
            error(field, f"Must be a string of at most {_MAX_SHORT} characters.")
    if item.get("external_id") == "":
        error("external_id", "Must not be empty (leave it out instead).")
    if item.get("metadata") is not None and not isinstance(item["metadata"], dict):
        error("metadata", "Must be a JSON object.")
    if item.get("gold") is not None and item["gold"] not in ("a", "b", "tie"):
        error("gold", 'Must be "a", "b" or "tie".')
    return errors


def pairs_import(*, project: Project, items: list[Any]) -> ImportResult:
    """Import pairs, all or nothing. A known external_id with the same content is `unchanged`; with other
    content it is an error, since judgments may already refer to the pair."""
    limit = settings.PAIRWISE_MAX_IMPORT_ITEMS
    if len(items) > limit:
        raise TooLarge(f"{len(items)} items in one request; the limit is {limit}. Split the file.")
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        errors.extend(_pair_item_errors(index, item))
    if errors:
        raise Invalid(
            f"{len({e['index'] for e in errors})} of {len(items)} items are invalid.", errors=errors
        )

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
    new_pairs = []
    unchanged = 0
    for index, (item, content_sha256) in enumerate(zip(items, hashes, strict=True)):
        external_id = item.get("external_id")
        if external_id in existing:
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
        new_pairs.append(
            Pair(
                project=project,
                external_id=external_id,
                prompt=item["prompt"],
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
        raise Invalid(
            f"{len({e['index'] for e in errors})} of {len(items)} items are invalid.", errors=errors
        )
    try:
        with transaction.atomic():
            Pair.objects.bulk_create(new_pairs, batch_size=1000)
    except IntegrityError:
        raise Conflict(
            "Another import added some of these external_ids at the same time; nothing was stored. Retry.",
            code="import_conflict",
        ) from None
    return ImportResult(created=len(new_pairs), unchanged=unchanged)


# The assignment engine


def _held_places(pair_ref: Any, now: datetime) -> Subquery:
    """Active, unexpired assignments of a pair: places held by raters who have not answered yet."""
    return Subquery(
        Assignment.objects.filter(pair=pair_ref, status=AssignmentStatus.ACTIVE, lease_expires_at__gt=now)
        .order_by()
        .values("pair")
        .annotate(n=Count("pk"))
        .values("n")
    )


def _places(pair: Pair, now: datetime, *, exclude: int | None = None) -> tuple[int, Counter[str]]:
    """(places taken, sides shown so far) for a pair whose row the caller has locked."""
    rows = Assignment.objects.filter(pair=pair).filter(
        Q(status=AssignmentStatus.JUDGED) | Q(status=AssignmentStatus.ACTIVE, lease_expires_at__gt=now)
    )
    if exclude is not None:
        rows = rows.exclude(pk=exclude)
    statuses = list(rows.values_list("status", "shown_left"))
    held = sum(1 for status, _ in statuses if status == AssignmentStatus.ACTIVE)
    return pair.judgment_count + held, Counter(side for _, side in statuses)


def _side_for(pair: Pair, sides: Counter[str]) -> str:
    """Show response A on the side it has been shown on least; ties alternate with the pair's id, so the
    first rater of every pair does not always see A on the left."""
    if sides["a"] != sides["b"]:
        return "a" if sides["a"] < sides["b"] else "b"
    return "a" if (pair.pk + sides["a"]) % 2 == 0 else "b"


def _gold_due(*, project: Project, rater: Rater) -> bool:
    served = Assignment.objects.filter(project=project, rater=rater).aggregate(
        total=Count("pk"), gold=Count("pk", filter=Q(pair__gold__isnull=False))
    )
    return served["gold"] + 1 <= project.gold_fraction * (served["total"] + 1)


def _claim(*, project: Project, rater: Rater, now: datetime, gold: bool) -> Assignment | None:
    quota = project.judgments_per_pair
    candidates = (
        Pair.objects.filter(project=project, gold__isnull=not gold)
        .exclude(Exists(Assignment.objects.filter(pair=OuterRef("pk"), rater=rater)))
        .order_by("-judgment_count", "id")
        # Row locks: a pair another request is filling is skipped, never waited for.
        .select_for_update(skip_locked=True, of=("self",))
    )
    if not gold:
        # Gold pairs check raters and are shown to any number of them; regular pairs fill up to the quota.
        candidates = candidates.alias(
            taken=F("judgment_count") + Coalesce(_held_places(OuterRef("pk"), now), Value(0))
        ).filter(judgment_count__lt=quota, taken__lt=quota)
    # Regular pairs one judgment_count at a time, fullest first: each query then walks the
    # (project, judgment_count, id) index in order and stops at the first free pair, where one
    # "ORDER BY judgment_count DESC, id" query reads and sorts every open pair of the project.
    levels: list[int | None] = [None] if gold else list(range(quota - 1, -1, -1))
    tried: list[int] = []
    for level in levels:
        level_candidates = candidates if level is None else candidates.filter(judgment_count=level)
        while len(tried) < _CLAIM_ATTEMPTS:
            pair = level_candidates.exclude(pk__in=tried).first()
            if pair is None:
                break
            # The candidate query's snapshot predates our lock; count again now that the row is ours.
            taken, sides = _places(pair, now)
            if gold or taken < quota:
                return Assignment.objects.create(
                    project=project,
                    pair=pair,
                    rater=rater,
                    shown_left=_side_for(pair, sides),
                    served_at=now,
                    lease_expires_at=now + timedelta(seconds=project.lease_seconds),
                )
            tried.append(pair.pk)
    return None


def assignment_next(*, project: Project, user: Any, now: datetime | None = None) -> Assignment | None:
    """The caller's next assignment in the project, or None when nothing is left for them.

    A rater holding an unexpired assignment gets it back. One whose lease has run out gets it back too
    (with a new lease) if its place is still free; otherwise it is closed as expired and a new pair is
    served. Pairs nearest completion come first, then the oldest; gold pairs at the project's gold_fraction.
    """
    if not user_can_rate(project=project, user=user):
        raise Forbidden("You are not a rater in this project.")
    now = now or timezone.now()
    lease = timedelta(seconds=project.lease_seconds)
    with transaction.atomic():
        # One request per rater at a time: a double click must not open two assignments.
        rater = Rater.objects.select_for_update().filter(user=user).first()
        if rater is None:
            rater = rater_get_or_create(user=user)
            Rater.objects.select_for_update().filter(pk=rater.pk).first()
        current = (
            Assignment.objects.filter(project=project, rater=rater, status=AssignmentStatus.ACTIVE)
            .select_related("pair", "rater")
            .first()
        )
        if current is not None:
            if current.lease_expires_at > now:
                return current
            pair = Pair.objects.select_for_update().get(pk=current.pair_id)
            taken, _ = _places(pair, now, exclude=current.pk)
            if current.pair.gold is not None or taken < project.judgments_per_pair:
                current.lease_expires_at = now + lease
                current.save(update_fields=["lease_expires_at"])
                return current
            current.status = AssignmentStatus.EXPIRED
            current.finished_at = now
            current.save(update_fields=["status", "finished_at"])
        has_gold = (
            project.gold_fraction > 0 and Pair.objects.filter(project=project, gold__isnull=False).exists()
        )
        if has_gold and _gold_due(project=project, rater=rater):
            assignment = _claim(project=project, rater=rater, now=now, gold=True)
            if assignment is not None:
                return assignment
        return _claim(project=project, rater=rater, now=now, gold=False)


def _own_assignment(*, assignment_id: int, user: Any) -> Assignment:
    assignment = (
        Assignment.objects.select_related("project", "pair")
        .filter(pk=assignment_id, rater__user=user)
        .first()
    )
    if assignment is None:
        raise NotFound(f"No assignment {assignment_id} of yours.")
    return assignment


def _to_ab(*, choice: str, shown_left: str) -> str:
    if choice == "tie":
        return "tie"
    shown_right = "b" if shown_left == "a" else "a"
    return shown_left if choice == "left" else shown_right


def _judgment_errors(
    *, project: Project, choice: str, strength: int | None, rationale: str, client_time_ms: int | None
) -> list[dict[str, Any]]:
    errors = []

    def error(field: str, message: str) -> None:
        errors.append({"field": field, "message": message})

    if choice not in ("left", "right", "tie"):
        error("choice", 'Must be "left", "right" or "tie".')
    if choice == "tie" and not project.allow_tie:
        error("choice", "This project does not allow ties.")
    if project.strength_levels == 0:
        if strength is not None:
            error("strength", "This project does not ask for strength.")
    elif choice == "tie":
        if strength is not None:
            error("strength", "A tie has no strength.")
    elif strength is None:
        error("strength", f"Required: 1 to {project.strength_levels}.")
    elif (
        isinstance(strength, bool)
        or not isinstance(strength, int)
        or not 1 <= strength <= project.strength_levels
    ):
        error("strength", f"Must be a whole number from 1 to {project.strength_levels}.")
    if project.rationale == RationaleMode.OFF and rationale:
        error("rationale", "This project does not take a rationale.")
    if project.rationale == RationaleMode.REQUIRED and not rationale.strip():
        error("rationale", "Required in this project.")
    if client_time_ms is not None and (
        isinstance(client_time_ms, bool) or not isinstance(client_time_ms, int) or client_time_ms < 0
    ):
        error("client_time_ms", "Must be a non-negative whole number of milliseconds.")
    return errors


def judgment_record(
    *,
    assignment_id: int,
    user: Any,
    choice: str,
    strength: int | None = None,
    rationale: str = "",
    client_time_ms: int | None = None,
    now: datetime | None = None,
) -> Judgment:
    """Record the rater's judgment on their assignment: atomic, and at most one per assignment.

    `choice` is what the rater saw: left, right or tie; it is stored as a, b or tie. A judgment that
    arrives after the lease is accepted while the pair still has a free place, and refused with
    `assignment_expired` once the place has gone to someone else.
    """
    assignment = _own_assignment(assignment_id=assignment_id, user=user)
    project = assignment.project
    errors = _judgment_errors(
        project=project, choice=choice, strength=strength, rationale=rationale, client_time_ms=client_time_ms
    )
    if errors:
        raise Invalid("The judgment is invalid.", errors=errors)
    if not user_can_rate(project=project, user=user):
        raise Forbidden("You are no longer a rater in this project.")
    with transaction.atomic():
        # Lock order everywhere: pair, then assignment.
        pair = Pair.objects.select_for_update().get(pk=assignment.pair_id)
        assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
        now = now or timezone.now()
        if assignment.status == AssignmentStatus.JUDGED:
            existing = Judgment.objects.filter(assignment=assignment).values_list("pk", flat=True).first()
            raise Conflict("This assignment is already judged.", code="already_judged", judgment=existing)
        if assignment.status == AssignmentStatus.SKIPPED:
            raise Conflict("This assignment was skipped.", code="assignment_skipped")
        if assignment.lease_expires_at <= now or assignment.status == AssignmentStatus.EXPIRED:
            taken, _ = _places(pair, now, exclude=assignment.pk)
            if pair.gold is None and taken >= project.judgments_per_pair:
                raise Conflict(
                    "This assignment expired and its place went to another rater; ask for the next pair.",
                    code="assignment_expired",
                )
        judgment = Judgment.objects.create(
            project=project,
            pair=pair,
            rater_id=assignment.rater_id,
            assignment=assignment,
            choice=_to_ab(choice=choice, shown_left=assignment.shown_left),
            strength=strength if choice != "tie" else None,
            rationale=rationale,
            shown_left=assignment.shown_left,
            time_on_task_ms=max(0, int((now - assignment.served_at).total_seconds() * 1000)),
            client_time_ms=client_time_ms,
            created_at=now,
        )
        assignment.status = AssignmentStatus.JUDGED
        assignment.finished_at = now
        assignment.save(update_fields=["status", "finished_at"])
        Pair.objects.filter(pk=pair.pk).update(judgment_count=F("judgment_count") + 1)
    return judgment


def assignment_skip(
    *, assignment_id: int, user: Any, reason: str = "", now: datetime | None = None
) -> Assignment:
    """Skip: the pair is never served to this rater again and its place goes back to the pool."""
    assignment = _own_assignment(assignment_id=assignment_id, user=user)
    with transaction.atomic():
        Pair.objects.select_for_update().filter(pk=assignment.pair_id).first()
        assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
        if assignment.status == AssignmentStatus.JUDGED:
            raise Conflict("This assignment is already judged.", code="already_judged")
        if assignment.status == AssignmentStatus.SKIPPED:
            return assignment
        assignment.status = AssignmentStatus.SKIPPED
        assignment.skip_reason = reason
        assignment.finished_at = now or timezone.now()
        assignment.save(update_fields=["status", "skip_reason", "finished_at"])
    return assignment


def leases_expire(*, now: datetime | None = None) -> int:
    """Close active assignments whose lease has run out, so admin pages show what is really held.

    Not needed for correctness: an expired lease already holds no place. A late judgment on a closed
    assignment is still accepted while the pair has a free place.
    """
    now = now or timezone.now()
    return Assignment.objects.filter(status=AssignmentStatus.ACTIVE, lease_expires_at__lte=now).update(
        status=AssignmentStatus.EXPIRED, finished_at=now
    )
