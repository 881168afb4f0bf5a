"""The comparison data model. Invariants that the database can hold are constraints here; the rest
(at most judgments_per_pair raters per pair) is held by row locks in annotation.services."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Length
from django.db.models.lookups import GreaterThan

# Bounds of a project's settings, checked by the model's validators (the API and the admin) and its
# constraints (the database).
MAX_JUDGMENTS_PER_PAIR = 25
MAX_STRENGTH_LEVELS = 10
MIN_LEASE_SECONDS = 10
MAX_LEASE_SECONDS = 7 * 24 * 3600
# Milliseconds in a PostgreSQL integer column (about 24 days): longer client timings are refused.
MAX_TIME_MS = 2**31 - 1
# The "very fast" threshold of the agreement dashboard: 0 turns the check off; ten minutes is never fast.
MAX_VERY_FAST_MS = 600_000
# A judgment's rationale, in characters: a few pages (a skip's reason: 2000). The API and the rating page
# refuse longer ones.
MAX_RATIONALE = 10_000
# How long after a judgment its rater may take it back and correct it (0: never); a day at most, so that
# a correction is a slip put right, not a rater's later change of mind.
MAX_CORRECTION_SECONDS = 24 * 3600
# Votes a reviewer may ask for on one pair beyond the project's quota, in all: a pair the model doubts
# wants a few more opinions, not a crowd.
MAX_EXTRA_JUDGMENTS = 25
# A review action's reason, in characters.
MAX_REVIEW_REASON = 2000


# The vocabulary of judgments, used by the models, their constraints, the services, the serializers and
# the pages. rm_training.votes.CHOICES holds the same values for the trainer, which imports no Django (a
# test keeps the two equal).
class Choice(models.TextChoices):
    """What a judgment says: response A, response B, or neither."""

    A = "a", "A"
    B = "b", "B"
    TIE = "tie", "Tie"


class Side(models.TextChoices):
    """One of a pair's two responses."""

    A = "a", "A"
    B = "b", "B"


class ShownChoice(models.TextChoices):
    """What the rater answers: the side of the screen, never a or b (see Assignment.stored_choice)."""

    LEFT = "left", "Left"
    RIGHT = "right", "Right"
    TIE = "tie", "Tie"


class RationaleMode(models.TextChoices):
    OFF = "off", "Off"
    OPTIONAL = "optional", "Optional"
    REQUIRED = "required", "Required"


class Selection(models.TextChoices):
    """How the engine chooses a rater's next regular pair (annotation.services.engine.claim)."""

    RANDOM = "random", "Default order"
    UNCERTAINTY = "uncertainty", "Uncertainty, with a random share"


class Arm(models.TextChoices):
    """Which rule chose an assignment's pair, under Selection.UNCERTAINTY."""

    UNCERTAINTY = "uncertainty", "Uncertainty"
    RANDOM = "random", "Random"


class Project(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, help_text="Markdown shown to raters.")
    judgments_per_pair = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_JUDGMENTS_PER_PAIR)],
        help_text=f"Exactly this many distinct raters judge each pair (1 to {MAX_JUDGMENTS_PER_PAIR}).",
    )
    allow_tie = models.BooleanField(default=True)
    strength_levels = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(MAX_STRENGTH_LEVELS)],
        help_text=f"0: no strength; K (up to {MAX_STRENGTH_LEVELS}): raters also say how much better, 1..K.",
    )
    rationale = models.CharField(max_length=10, choices=RationaleMode.choices, default=RationaleMode.OPTIONAL)
    lease_seconds = models.PositiveIntegerField(
        default=900,
        validators=[MinValueValidator(MIN_LEASE_SECONDS), MaxValueValidator(MAX_LEASE_SECONDS)],
        help_text="How long an assignment is held before its place may go to someone else "
        f"({MIN_LEASE_SECONDS} s to {MAX_LEASE_SECONDS // 86400} days).",
    )
    gold_fraction = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of served assignments that are gold pairs, when the project has any.",
    )
    very_fast_ms = models.PositiveIntegerField(
        default=3000,
        validators=[MaxValueValidator(MAX_VERY_FAST_MS)],
        help_text="Judgments made faster than this many milliseconds count as very fast on the agreement "
        f"dashboard, and a rater with many of them is flagged (0: off; at most {MAX_VERY_FAST_MS}).",
    )
    correction_seconds = models.PositiveIntegerField(
        default=120,
        validators=[MaxValueValidator(MAX_CORRECTION_SECONDS)],
        help_text="For this many seconds after a judgment its rater may undo it and correct the answer; "
        f"the earlier answer is kept as a revision (0: off; at most {MAX_CORRECTION_SECONDS}).",
    )
    selection = models.CharField(
        max_length=12,
        choices=Selection.choices,
        default=Selection.RANDOM,
        help_text="How a rater's next pair is chosen: the default order (pairs nearest completion first, "
        "then oldest), or the pairs the active reward model is least sure of, with a random share.",
    )
    selection_epsilon = models.FloatField(
        default=0.2,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Under uncertainty selection, the share of pairs drawn uniformly at random instead "
        "(0 to 1): the random arm that the uncertain pairs are measured against.",
    )
    # When the active reward model's priorities were last written to the project's pairs
    # (pair_priorities_set); null while no model has scored them, and uncertainty selection then serves
    # the default order.
    priorities_at = models.DateTimeField(null=True, blank=True, editable=False)
    rater_group = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rated_projects",
        help_text="Every member of this group may rate, besides the project's own members.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            # The engine probes once per judgment_count level: a quota in the thousands made each
            # `next` take seconds. No team needs more than a couple of dozen raters on one pair.
            models.CheckConstraint(
                condition=Q(judgments_per_pair__gte=1, judgments_per_pair__lte=MAX_JUDGMENTS_PER_PAIR),
                name="project_quota_range",
                violation_error_message=f"Judgments per pair must be from 1 to {MAX_JUDGMENTS_PER_PAIR}.",
            ),
            models.CheckConstraint(
                condition=Q(strength_levels__lte=MAX_STRENGTH_LEVELS),
                name="project_strength_levels_range",
                violation_error_message=f"Strength levels must be at most {MAX_STRENGTH_LEVELS}.",
            ),
            # A lease far in the future overflows the date arithmetic of every `next`.
            models.CheckConstraint(
                condition=Q(lease_seconds__gte=MIN_LEASE_SECONDS, lease_seconds__lte=MAX_LEASE_SECONDS),
                name="project_lease_range",
                violation_error_message=(
                    f"The lease must be from {MIN_LEASE_SECONDS} to {MAX_LEASE_SECONDS} seconds."
                ),
            ),
            models.CheckConstraint(
                condition=Q(gold_fraction__gte=0) & Q(gold_fraction__lte=1),
                name="project_gold_fraction_range",
                violation_error_message="The gold fraction must be from 0 to 1.",
            ),
            models.CheckConstraint(
                condition=Q(rationale__in=RationaleMode.values), name="project_rationale_mode"
            ),
            models.CheckConstraint(
                condition=Q(very_fast_ms__lte=MAX_VERY_FAST_MS),
                name="project_very_fast_ms_range",
                violation_error_message=f"The very-fast threshold must be at most {MAX_VERY_FAST_MS} ms.",
            ),
            models.CheckConstraint(
                condition=Q(selection__in=Selection.values), name="project_selection_valid"
            ),
            models.CheckConstraint(
                condition=Q(selection_epsilon__gte=0) & Q(selection_epsilon__lte=1),
                name="project_selection_epsilon_range",
                violation_error_message="The random share must be from 0 to 1.",
            ),
            models.CheckConstraint(
                condition=Q(correction_seconds__gte=0, correction_seconds__lte=MAX_CORRECTION_SECONDS),
                name="project_correction_seconds_range",
                violation_error_message=(
                    f"The correction window must be from 0 to {MAX_CORRECTION_SECONDS} seconds."
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def selection_in_effect(self) -> str:
        """The selection the engine applies now: uncertainty only once a model's priorities were written
        to the project's pairs; until then the default order, whatever `selection` says."""
        if self.selection == Selection.UNCERTAINTY and self.priorities_at is not None:
            return Selection.UNCERTAINTY.value
        return Selection.RANDOM.value


class Membership(models.Model):
    """A user allowed to rate in a project. Removing it keeps the user's judgments."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project}"


def new_pseudonym() -> str:
    return "r-" + secrets.token_hex(6)


class Rater(models.Model):
    """Whoever makes judgments: a user of this site, or a rater imported with outside history.

    An imported rater has no user (so cannot log in): it is named by the source's id within the project
    it was imported into. Exports name every rater by `pseudonym` only, never by username, email or source
    id, and it never changes.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="rater"
    )
    pseudonym = models.CharField(max_length=32, unique=True, default=new_pseudonym, editable=False)
    imported_into = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="imported_raters"
    )
    # The rater's id in the source the judgments came from (imported raters only).
    source_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001  (null: a user)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # A rater is either a user of this site or an imported one, never both or neither.
            models.CheckConstraint(
                condition=Q(user__isnull=False, imported_into__isnull=True, source_id__isnull=True)
                | Q(user__isnull=True, imported_into__isnull=False, source_id__isnull=False),
                name="rater_user_or_imported",
            ),
            # Re-imports find the same imported rater by the source's id.
            models.UniqueConstraint(fields=["imported_into", "source_id"], name="rater_source_id_unique"),
        ]

    def __str__(self) -> str:
        if self.user is not None:
            return self.user.get_username()
        return f"{self.source_id} (imported)"


class Pair(models.Model):
    # Indexed by pair_project_id below, (project, id), which also orders a project's pairs by id.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pairs", db_index=False)
    # Null, not "", when absent: the unique constraint below must not treat absent ids as equal.
    external_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    # For a plain prompt, the text itself; for a conversation, its documented text rendering
    # (rm_training.conversation), so that every reader of `prompt` (lists, search, the standard export)
    # still has one string.
    prompt = models.TextField()
    # A conversation's messages ({"role": "system" | "user" | "assistant", "content": str}, ending with the
    # user's turn); null for a plain prompt, which means one user message holding `prompt`.
    messages = models.JSONField(null=True, blank=True)
    response_a = models.TextField()
    response_b = models.TextField()
    model_a = models.CharField(max_length=200, blank=True)
    model_b = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    gold = models.CharField(max_length=3, choices=Choice.choices, null=True, blank=True)  # noqa: DJ001  (null: no gold)
    # sha256 of the imported content: a re-import with the same external_id compares against it.
    content_sha256 = models.CharField(max_length=64, editable=False)
    # Judgments made so far; kept by judgment_record under the pair's row lock, read by the engine's
    # ordering ("nearest completion first") without counting rows.
    judgment_count = models.PositiveIntegerField(default=0, editable=False)
    # Judgments asked for beyond the project's judgments_per_pair by a reviewer (pair_quota_raise): the
    # engine serves the pair until judgment_count reaches judgments_per_pair + extra_judgments.
    extra_judgments = models.PositiveSmallIntegerField(default=0, editable=False)
    # Left out of training by a reviewer (pair_leave_out): the judgments export keeps its rows, marked
    # left_out; the preferences export, snapshots' training and the trainer leave the pair out.
    left_out = models.BooleanField(default=False, editable=False)
    # How unsure the active reward model is of this pair (1 at P(a preferred) = 0.5, down to 0), written by
    # reward_models through pair_priorities_set; uncertainty selection serves the highest first. Null: not
    # scored.
    priority = models.FloatField(null=True, blank=True, editable=False)
    # Which response is longer (0: A, 1: B, -1: as long), computed by the database when the texts are
    # written; each judgment copies it (Judgment.pair_longer) for the agreement report's length figures.
    longer = models.GeneratedField(
        expression=Case(
            When(GreaterThan(Length("response_a"), Length("response_b")), then=Value(0)),
            When(GreaterThan(Length("response_b"), Length("response_a")), then=Value(1)),
            default=Value(-1),
        ),
        output_field=models.SmallIntegerField(),
        db_persist=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Re-imports are matched on external_id, so it must name one pair per project.
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=Q(external_id__isnull=False),
                name="pair_external_id_unique",
                violation_error_message="This project already has a pair with this external id.",
            ),
            models.CheckConstraint(
                condition=~Q(prompt=""),
                name="pair_prompt_not_empty",
                violation_error_message="The prompt must not be empty.",
            ),
            # A comparison of a response with itself carries no preference.
            models.CheckConstraint(
                condition=~Q(response_a=F("response_b")),
                name="pair_responses_differ",
                violation_error_message=(
                    "The two responses are the same text: a pair compares two different responses."
                ),
            ),
            models.CheckConstraint(
                condition=Q(gold__isnull=True) | Q(gold__in=Choice.values), name="pair_gold_choice"
            ),
            models.CheckConstraint(
                condition=Q(extra_judgments__lte=MAX_EXTRA_JUDGMENTS),
                name="pair_extra_judgments_range",
                violation_error_message=f"At most {MAX_EXTRA_JUDGMENTS} extra judgments per pair.",
            ),
        ]
        indexes = [
            # The claim's first probe and progress's count of raised pairs: the few pairs a reviewer asked
            # more votes for, found without reading the others.
            models.Index(
                fields=["project", "judgment_count", "id"],
                condition=Q(extra_judgments__gt=0, gold__isnull=True),
                name="pair_raised",
            ),
            # The claim's probes walk it in order.
            models.Index(fields=["project", "judgment_count", "id"], name="pair_engine_order"),
            # A project's gold pairs (few) without a walk of the others: the agreement report's gold
            # answers, the claim's gold probe, the rule that serves gold only when there is some.
            models.Index(
                fields=["project", "id"],
                include=["gold"],
                condition=Q(gold__isnull=False),
                name="pair_gold",
            ),
            # (And on PostgreSQL only, made by migration 0014 beside pairwise_claim, whose probes walk it:
            # pair_uncertainty_order, (project, judgment_count, priority DESC NULLS LAST, id) WHERE gold IS
            # NULL. SQLite cannot index NULLS LAST, and its claim enumerates a small project's candidates.)
            # The foreign key's index, in id order: a project's pairs listed by id, and the id range that
            # uncertainty selection's random arm draws from (pairwise_claim, migration 0014) in two probes.
            models.Index(fields=["project", "id"], name="pair_project_id"),
            # Re-imports without an external_id find the same content by its hash.
            models.Index(fields=["project", "content_sha256"], name="pair_project_content"),
        ]

    def __str__(self) -> str:
        return self.external_id or f"pair {self.pk}"


class AssignmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    JUDGED = "judged", "Judged"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Expired"


class Assignment(models.Model):
    """A pair served to a rater. An active assignment whose lease has passed holds no place."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="assignments")
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="assignments")
    shown_left = models.CharField(
        max_length=1, choices=Side.choices, help_text="Which response was shown on the left."
    )
    status = models.CharField(
        max_length=10, choices=AssignmentStatus.choices, default=AssignmentStatus.ACTIVE
    )
    served_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.TextField(blank=True)
    # Under uncertainty selection, the rule that chose the pair and the probability that this pair was the
    # one chosen, given the rule and the candidates at that moment (inverse-propensity weights); null under
    # the default order and for gold pairs.
    arm = models.CharField(max_length=12, choices=Arm.choices, null=True, blank=True)  # noqa: DJ001
    propensity = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            # No rater is served the same pair twice, skipped or expired ones included.
            models.UniqueConstraint(fields=["rater", "pair"], name="assignment_rater_pair_unique"),
            # One open assignment per rater and project: asking again returns it (no hoarding).
            models.UniqueConstraint(
                fields=["rater", "project"],
                condition=Q(status=AssignmentStatus.ACTIVE),
                name="assignment_one_active_per_rater",
            ),
            models.CheckConstraint(
                condition=Q(shown_left__in=Side.values), name="assignment_shown_left_side"
            ),
            models.CheckConstraint(
                condition=Q(status__in=AssignmentStatus.values), name="assignment_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(lease_expires_at__gt=F("served_at")), name="assignment_lease_after_served"
            ),
            # Both or neither; a probability, never 0 (the pair was chosen).
            models.CheckConstraint(
                condition=Q(arm__isnull=True, propensity__isnull=True)
                | Q(arm__in=Arm.values, propensity__gt=0, propensity__lte=1),
                name="assignment_arm_propensity",
            ),
        ]
        indexes = [
            models.Index(fields=["pair", "status", "lease_expires_at"], name="assignment_pair_places"),
            # A project's open assignments (at most one per rater): uncertainty selection counts its
            # candidates with the pairs whose places they fill (pairwise_claim, migration 0014).
            models.Index(
                fields=["project"], condition=Q(status=AssignmentStatus.ACTIVE), name="assignment_active"
            ),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk} ({self.status})"

    # left/right <-> a/b, in one place: the rater sees sides of the screen, the data keeps a and b.

    @property
    def shown_right(self) -> str:
        return Side.B if self.shown_left == Side.A else Side.A

    def text_on(self, side: str) -> str:
        """The response shown on the given side of the screen ("left" or "right")."""
        shown = self.shown_left if side == ShownChoice.LEFT else self.shown_right
        return self.pair.response_a if shown == Side.A else self.pair.response_b

    def stored_choice(self, shown_choice: str) -> Choice:
        """The a/b/tie to store for what the rater answered on this assignment's screen."""
        shown = ShownChoice(shown_choice)  # anything else is a caller's bug, not a rater's answer
        if shown == ShownChoice.TIE:
            return Choice.TIE
        side = self.shown_left if shown == ShownChoice.LEFT else self.shown_right
        return Choice(side)


def shown_choice(*, shown_left: str, choice: str) -> ShownChoice:
    """Assignment.stored_choice the other way: what the rater answered on the screen they saw, for a
    stored a/b/tie and the side response A was shown on (a judgment's or a revision's shown_left)."""
    if choice == Choice.TIE:
        return ShownChoice.TIE
    return ShownChoice.LEFT if choice == shown_left else ShownChoice.RIGHT


class Judgment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judgments")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="judgments")
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="judgments")
    # Null for judgments brought in from elsewhere; one judgment per assignment makes retries harmless.
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.PROTECT, related_name="judgment"
    )
    choice = models.CharField(max_length=3, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    # Null for imported judgments whose source did not record the sides.
    shown_left = models.CharField(max_length=1, choices=Side.choices, null=True, blank=True)  # noqa: DJ001
    time_on_task_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Measured by the server.")
    client_time_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_TIME_MS)],
        help_text="Reported by the browser.",
    )
    created_at = models.DateTimeField()
    # Which of the pair's responses is longer (Pair.longer: 0 A, 1 B, -1 as long), copied when the judgment
    # is written, under the pair's row lock (a judged pair's texts cannot change: services.pair_save): the
    # agreement report's length figures come with the judgments' rows, without a read of the judged pairs.
    pair_longer = models.SmallIntegerField(editable=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            # A rater judges a pair once, whatever the path the judgment came in by.
            models.UniqueConstraint(fields=["pair", "rater"], name="judgment_pair_rater_unique"),
            models.CheckConstraint(condition=Q(choice__in=Choice.values), name="judgment_choice_valid"),
            models.CheckConstraint(
                condition=Q(strength__isnull=True) | Q(strength__gte=1), name="judgment_strength_positive"
            ),
            # Strength says how much better one side is; a tie has none.
            models.CheckConstraint(
                condition=~Q(choice=Choice.TIE) | Q(strength__isnull=True),
                name="judgment_tie_has_no_strength",
            ),
            models.CheckConstraint(
                condition=Q(shown_left__isnull=True) | Q(shown_left__in=Side.values),
                name="judgment_shown_left_side",
            ),
            models.CheckConstraint(
                condition=Q(pair_longer__in=[-1, 0, 1]), name="judgment_pair_longer_valid"
            ),
        ]
        indexes = [
            # Exports read a project's judgments in id order, in keyset chunks (selectors.exports).
            models.Index(fields=["project", "id"], name="judgment_project_id"),
            models.Index(fields=["project", "created_at"], name="judgment_project_time"),
            # Progress counts a rater's judgments in a project with every pair served.
            models.Index(fields=["rater", "project"], name="judgment_rater_project"),
        ]

    def __str__(self) -> str:
        return f"judgment {self.pk}: {self.choice}"


class JudgmentRevision(models.Model):
    """An earlier answer of a judgment, kept when its rater corrected it (engine.judgment_correct). The
    Judgment row holds the latest answer, which exports, agreement and training read; these rows are never
    changed or deleted while their judgment exists."""

    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="revisions")
    # The judgment's project, so that the agreement report's fingerprint counts a project's corrections
    # without a join.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judgment_revisions")
    # Who replaced this answer: the judgment's own rater (no one else may correct it).
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="judgment_revisions")
    choice = models.CharField(max_length=3, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    shown_left = models.CharField(max_length=1, choices=Side.choices)
    answered_at = models.DateTimeField(help_text="When this answer was given.")
    replaced_at = models.DateTimeField(help_text="When the correction replaced it.")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(choice__in=Choice.values), name="revision_choice_valid"),
            models.CheckConstraint(
                condition=(Q(strength__isnull=True) | Q(strength__gte=1))
                & (~Q(choice=Choice.TIE) | Q(strength__isnull=True)),
                name="revision_strength_valid",
            ),
            models.CheckConstraint(condition=Q(shown_left__in=Side.values), name="revision_shown_left_side"),
            models.CheckConstraint(
                condition=Q(replaced_at__gte=F("answered_at")), name="revision_replaced_after_answered"
            ),
        ]

    def __str__(self) -> str:
        return f"revision {self.pk} of judgment {self.judgment_id}: {self.choice}"


class ReviewAction(models.TextChoices):
    """What a reviewer did with a pair of the review queue."""

    MORE_VOTES = "more_votes", "Ask for more votes"
    LEAVE_OUT = "leave_out", "Leave out of training"
    KEEP = "keep", "Keep as it is"
    PUT_BACK = "put_back", "Put back into training"


class PairReviewAction(models.Model):
    """A reviewer's decision on a pair, recorded by annotation.services.review (who, when, why). Rows are
    never changed or deleted: they are the record; the pair's own fields hold the effect."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="review_actions")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="review_actions")
    action = models.CharField(max_length=10, choices=ReviewAction.choices)
    # more_votes: the judgments asked for by this action; null for the others.
    extra_judgments = models.PositiveSmallIntegerField(null=True, blank=True)
    reason = models.TextField()
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # The pair's judgments when the action was taken: what the reviewer saw.
    judgment_count = models.PositiveIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(action__in=ReviewAction.values), name="review_action_valid"),
            # Only "more votes" says how many; it always does.
            models.CheckConstraint(
                condition=Q(action=ReviewAction.MORE_VOTES, extra_judgments__gte=1)
                | (~Q(action=ReviewAction.MORE_VOTES) & Q(extra_judgments__isnull=True)),
                name="review_action_extra_judgments",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="review_action_reason_given"),
        ]
        indexes = [models.Index(fields=["pair", "action"], name="review_action_pair")]

    def __str__(self) -> str:
        return f"{self.action} on pair {self.pair_id}"


# Counters kept by the writes that change them (annotation.services.engine.counters), so that progress
# and the agreement report's cache check read a few rows instead of counting a project's pairs. A
# recount (manage.py recount_progress, the project admin's action) rebuilds them from the rows.


class ProjectCounter(models.Model):
    """One of a project's COUNTER_SHARDS rows; the project's figures are their sums. A writer updates the
    row of its own shard (by rater id), so concurrent raters do not queue on one hot row."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="counters")
    shard = models.PositiveSmallIntegerField()
    # Regular pairs with fewer than judgments_per_pair judgments: rater_progress's "open pairs".
    open_pairs = models.BigIntegerField(default=0)
    regular_pairs = models.BigIntegerField(default=0)
    gold_pairs = models.BigIntegerField(default=0)
    # Bumped by every write that changes what the agreement report reads: its cache check.
    version = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "shard"], name="project_counter_shard")]

    def __str__(self) -> str:
        return f"{self.project} counter {self.shard}"


class RaterProgress(models.Model):
    """A rater's counts in a project: judgments made, and open pairs finished (judged, skipped or expired
    on a pair that is still open): rater_progress's "available" is open pairs less these."""

    # No foreign key constraint in the database: its check at COMMIT takes a KEY SHARE lock on the rater's
    # row, and a judgment that closes a pair adds to the rows of the pair's other raters, whose rows their
    # own requests hold FOR UPDATE (the engine's one-request-per-rater lock) while they wait for that
    # pair: a deadlock. Raters are never deleted but with their project (imported raters), which takes
    # these rows with it.
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="progress", db_constraint=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rater_progress")
    done = models.BigIntegerField(default=0)
    finished = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rater", "project"], name="rater_progress_unique")]

    def __str__(self) -> str:
        return f"{self.rater} in {self.project}"
