"""Request validation and response shapes for the REST API. No business rules: those are in services."""

from __future__ import annotations

from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation import services
from annotation.models import (
    MAX_CORRECTION_SECONDS,
    MAX_RATIONALE,
    MAX_TIME_MS,
    MAX_VERY_FAST_MS,
    Arm,
    Assignment,
    Choice,
    Judgment,
    JudgmentRevision,
    Pair,
    Project,
    ShownChoice,
    Side,
    shown_choice,
)
from annotation.selectors.leaderboard import DEFAULT_ROUNDS, MAX_ROUNDS
from rm_training import conversation
from web.api import StrictFieldsMixin


class TokenRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class RaterCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(trim_whitespace=False, write_only=True)
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class RaterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class ProjectRatersAddSerializer(StrictFieldsMixin, serializers.Serializer):
    usernames = serializers.ListField(child=serializers.CharField(), allow_empty=False, max_length=10_000)


class ProjectRatersAddedSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.CharField(), help_text="Usernames newly added.")


class ProjectRaterSerializer(serializers.Serializer):
    username = serializers.CharField()
    judgments = serializers.IntegerField()
    last_judgment_at = serializers.DateTimeField(allow_null=True)
    holding_assignment = serializers.BooleanField()
    added_at = serializers.DateTimeField()


class ProjectSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    selection_in_effect = serializers.CharField(
        read_only=True,
        help_text="The selection the engine applies now: uncertainty only once the active reward model's "
        "priorities were written to the project's pairs; the default order until then.",
    )

    class Meta:
        model = Project
        fields = ["slug", *services.PROJECT_SETTINGS, "selection_in_effect", "created_at"]
        read_only_fields = ["selection_in_effect", "created_at"]
        # The model's check constraints, as field bounds so that errors name the field.
        extra_kwargs = {
            "judgments_per_pair": {"min_value": 1},
            "strength_levels": {"min_value": 0, "max_value": 10},
            "lease_seconds": {"min_value": 10},
            "gold_fraction": {"min_value": 0.0, "max_value": 1.0},
            "very_fast_ms": {"min_value": 0, "max_value": MAX_VERY_FAST_MS},
            "correction_seconds": {"min_value": 0, "max_value": MAX_CORRECTION_SECONDS},
            "selection_epsilon": {"min_value": 0.0, "max_value": 1.0},
        }

    # -0.0 is in range, and PostgreSQL stores it as 0: the answer says so too (it echoed -0.0).
    def validate_gold_fraction(self, value: float) -> float:
        return value + 0.0

    def validate_selection_epsilon(self, value: float) -> float:
        return value + 0.0

    def validate_slug(self, value: str) -> str:
        if self.instance is not None and value != self.instance.slug:
            raise serializers.ValidationError(
                "The slug cannot change: URLs and exports name the project by it."
            )
        return value


class ImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class PairsImportQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    format = serializers.ChoiceField(
        choices=list(conversation.FORMATS),
        required=False,
        default="pairs",
        help_text="pairs: Pairwise's pair objects; trl: TRL preference rows; hh-rlhf: HH-RLHF transcripts.",
    )


class PairSerializer(serializers.ModelSerializer):
    class Meta:
        model = Pair
        fields = [
            "id",
            "external_id",
            "prompt",
            "messages",
            "response_a",
            "response_b",
            "model_a",
            "model_b",
            "metadata",
            "gold",
            "judgment_count",
            "created_at",
        ]
        read_only_fields = fields


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(help_text="The caller's judgments in this project.")
    available = serializers.IntegerField(help_text="Pairs still open to the caller.")


class RatingSettingsSerializer(serializers.ModelSerializer):
    """What the rating page needs to know to build its form."""

    class Meta:
        model = Project
        fields = ["slug", "allow_tie", "strength_levels", "rationale"]
        read_only_fields = fields


class ServedAssignmentSerializer(serializers.Serializer):
    """An assignment as the rater sees it: left and right, never a and b."""

    assignment = serializers.IntegerField(source="pk")
    pair = serializers.IntegerField(source="pair_id")
    prompt = serializers.CharField(source="pair.prompt")
    messages = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        source="pair.messages",
        allow_null=True,
        help_text="The conversation ([{role, content}], the user's turn last), or null for a plain prompt.",
    )
    left = serializers.SerializerMethodField()
    right = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField(source="lease_expires_at")
    progress = serializers.SerializerMethodField()
    project = serializers.SerializerMethodField()

    @extend_schema_field(serializers.CharField())
    def get_left(self, assignment: Assignment) -> str:
        return assignment.text_on(ShownChoice.LEFT)

    @extend_schema_field(serializers.CharField())
    def get_right(self, assignment: Assignment) -> str:
        return assignment.text_on(ShownChoice.RIGHT)

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, assignment: Assignment) -> dict[str, int]:
        return self.context["progress"]

    @extend_schema_field(RatingSettingsSerializer)
    def get_project(self, assignment: Assignment) -> dict[str, Any]:
        # From the view: the assignment's own project attribute may not be loaded. The fields of
        # RatingSettingsSerializer, read directly: building a ModelSerializer for every pair served cost
        # more than the rest of this answer.
        project = self.context["project"]
        return {field: getattr(project, field) for field in RatingSettingsSerializer.Meta.fields}


class JudgmentRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    """Types only; what a project allows (ties, strength, rationale) is checked by judgment_record."""

    choice = serializers.ChoiceField(choices=ShownChoice.choices)
    strength = serializers.IntegerField(required=False, allow_null=True, default=None)
    rationale = serializers.CharField(
        required=False, allow_blank=True, default="", trim_whitespace=False, max_length=MAX_RATIONALE
    )
    client_time_ms = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=MAX_TIME_MS
    )
    next = serializers.BooleanField(
        required=False, default=False, help_text="Answer with the caller's next assignment too."
    )


class CorrectableUntilMixin(serializers.Serializer):
    correctable_until = serializers.SerializerMethodField(
        help_text="Until when the caller may correct this judgment (POST /judgments/{id}/correction/); null "
        "when it never may (the project has corrections off)."
    )

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_correctable_until(self, judgment: Judgment) -> str | None:
        # The judgment's project is loaded by every service that returns one.
        until = services.correctable_until(judgment=judgment, project=judgment.project)
        return None if until is None else serializers.DateTimeField().to_representation(until)


class JudgmentRecordedSerializer(CorrectableUntilMixin):
    judgment = serializers.IntegerField(source="pk")
    choice = serializers.ChoiceField(choices=Choice.choices)
    strength = serializers.IntegerField(allow_null=True)
    time_on_task_ms = serializers.IntegerField(allow_null=True)


class NextFieldsMixin(serializers.Serializer):
    """The one-round-trip answer's fields, present only when the request asked for `next`. For the schema:
    the view adds them to the answer."""

    next = ServedAssignmentSerializer(required=False, allow_null=True, help_text="Null when none is left.")
    retry_after = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="When next is null: seconds until a place held by another rater may come free; null when "
        "the rater is done.",
    )


class JudgmentAnswerSerializer(NextFieldsMixin, JudgmentRecordedSerializer):
    pass


class CorrectionRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    """A judgment's fields, as strict; what the project allows is checked by judgment_correct."""

    choice = serializers.ChoiceField(choices=ShownChoice.choices, help_text="As shown: left, right or tie.")
    strength = serializers.IntegerField(required=False, allow_null=True, default=None)
    rationale = serializers.CharField(
        required=False, allow_blank=True, default="", trim_whitespace=False, max_length=MAX_RATIONALE
    )


class RevisionSerializer(serializers.Serializer):
    """An earlier answer of a judgment, as its rater saw it (left and right)."""

    choice = serializers.SerializerMethodField()
    strength = serializers.IntegerField(allow_null=True)
    rationale = serializers.CharField(allow_blank=True)
    shown_left = serializers.CharField(help_text="Which response (a or b) was on the left.")
    answered_at = serializers.DateTimeField()
    replaced_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ChoiceField(choices=ShownChoice.choices))
    def get_choice(self, revision: JudgmentRevision) -> str:
        return shown_choice(shown_left=revision.shown_left, choice=revision.choice).value


class OwnJudgmentSerializer(CorrectableUntilMixin):
    """One of the caller's judgments with the pair as they saw it, the latest answer first and the earlier
    ones in `revisions`, oldest first."""

    judgment = serializers.IntegerField(source="pk")
    pair = serializers.IntegerField(source="pair_id")
    prompt = serializers.CharField(source="pair.prompt")
    left = serializers.SerializerMethodField()
    right = serializers.SerializerMethodField()
    choice = serializers.SerializerMethodField()
    strength = serializers.IntegerField(allow_null=True)
    rationale = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField(help_text="When the first answer was given.")
    revisions = RevisionSerializer(many=True, read_only=True)

    def _shown(self, judgment: Judgment) -> tuple[str, str]:
        """(left, right) texts. Judgments of this site's users always record the sides; imported ones
        (which may not) are never a user's."""
        pair = judgment.pair
        if judgment.shown_left == Side.B:
            return pair.response_b, pair.response_a
        return pair.response_a, pair.response_b

    @extend_schema_field(serializers.CharField())
    def get_left(self, judgment: Judgment) -> str:
        return self._shown(judgment)[0]

    @extend_schema_field(serializers.CharField())
    def get_right(self, judgment: Judgment) -> str:
        return self._shown(judgment)[1]

    @extend_schema_field(serializers.ChoiceField(choices=ShownChoice.choices))
    def get_choice(self, judgment: Judgment) -> str:
        return shown_choice(shown_left=judgment.shown_left or Side.A, choice=judgment.choice).value


class SkipRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    next = serializers.BooleanField(
        required=False, default=False, help_text="Answer with the caller's next assignment too."
    )


class SkippedSerializer(serializers.Serializer):
    assignment = serializers.IntegerField(source="pk")
    status = serializers.CharField()


class SkipAnswerSerializer(NextFieldsMixin, SkippedSerializer):
    pass


class JudgmentImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    raters_created = serializers.IntegerField(help_text="Imported raters seen for the first time.")


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time that names its time zone: a bare one would be read in the server's zone."""

    def to_internal_value(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None:
                raise serializers.ValidationError(
                    "Add a time zone, such as 2026-11-30T09:15:00Z (in a URL, write + as %2B)."
                )
        return super().to_internal_value(value)


class ExportQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    """The filters of every export: judgment time in [since, until), pairs with at least min_votes.

    An unknown parameter is refused: a typo such as `min_vote=3` would otherwise export everything.
    """

    since = AwareDateTimeField(required=False, help_text="Judgments made at or after this time.")
    until = AwareDateTimeField(required=False, help_text="Judgments made before this time.")
    min_votes = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=10_000,
        help_text="Only pairs with at least this many judgments.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "Must be later than since."})
        return attrs


class LeaderboardQuerySerializer(ExportQuerySerializer):
    """The leaderboard's options besides the export filters (annotation.selectors.LeaderboardOptions)."""

    reference = serializers.CharField(
        required=False,
        max_length=200,
        help_text="The model rated 1000; without it the mean of the models is at 1000.",
    )
    # DRF takes declared fields out of the class, so this one does not shadow Field.style at run time.
    style = serializers.BooleanField(  # type: ignore[assignment]
        required=False, default=True, help_text="Also the style-controlled ratings (length and markdown)."
    )
    exclude_flagged = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Leave out the judgments of the raters the agreement report flags (same filters).",
    )
    seed = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=2**32 - 1, help_text="The bootstrap's seed."
    )
    rounds = serializers.IntegerField(
        required=False,
        default=DEFAULT_ROUNDS,
        min_value=0,
        max_value=MAX_ROUNDS,
        help_text="Bootstrap rounds for the intervals (0: none).",
    )


def _raw_csv_field() -> serializers.BooleanField:
    # One wording for every CSV export that takes ?raw (docs/API.md, Export).
    return serializers.BooleanField(
        required=False,
        default=False,
        help_text="CSV only: text cells as they are. Without it a cell that starts with =, +, -, @, tab or "
        "carriage return gets a leading ' so that a spreadsheet shows it instead of running it as a formula.",
    )


class JudgmentsExportQuerySerializer(ExportQuerySerializer):
    raw = _raw_csv_field()


class LeaderboardExportQuerySerializer(LeaderboardQuerySerializer):
    raw = _raw_csv_field()


class JudgmentListQuerySerializer(ExportQuerySerializer):
    # The paginated list's own parameters (IdCursorPagination).
    _FORM_EXTRAS = frozenset({"cursor", "page_size"})


class PreferencesQuerySerializer(ExportQuerySerializer):
    format = serializers.ChoiceField(
        choices=["standard", "conversational"],
        required=False,
        default="standard",
        help_text="conversational: prompt as chat messages, chosen and rejected as assistant messages.",
    )


class ExportedJudgmentSerializer(serializers.Serializer):
    """One judgment as every export gives it; `rater` is a stable pseudonym, never a username."""

    judgment_id = serializers.IntegerField()
    pair_id = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True)
    prompt = serializers.CharField()
    messages = serializers.JSONField(
        allow_null=True, help_text="A conversation's messages; null for a plain prompt (see Importing pairs)."
    )
    response_a = serializers.CharField(allow_blank=True)
    response_b = serializers.CharField(allow_blank=True)
    model_a = serializers.CharField(allow_blank=True)
    model_b = serializers.CharField(allow_blank=True)
    rater = serializers.CharField(source="rater_pseudonym")
    choice = serializers.ChoiceField(choices=Choice.choices)
    strength = serializers.IntegerField(allow_null=True)
    shown_left = serializers.CharField(allow_null=True)
    rationale = serializers.CharField(allow_blank=True)
    time_on_task_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField(format="%Y-%m-%dT%H:%M:%S.%fZ")  # as in the export files
    left_out = serializers.BooleanField(help_text="A reviewer left the pair out of training.")
    arm = serializers.ChoiceField(
        choices=Arm.choices,
        allow_null=True,
        help_text="Under active selection, the rule that chose the pair for this judgment; null under the "
        "default order and for imported judgments.",
    )
    propensity = serializers.FloatField(
        allow_null=True,
        help_text="The probability that the pair was the one chosen, given the rule and the candidates at "
        "that moment (0 < p <= 1); null when arm is.",
    )
