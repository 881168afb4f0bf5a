"""Request validation and response shapes for the REST API. No business rules: those are in services."""

from __future__ import annotations

from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation import services
from annotation.models import (
    MAX_RATIONALE,
    MAX_TIME_MS,
    MAX_VERY_FAST_MS,
    Assignment,
    Choice,
    Pair,
    Project,
    ShownChoice,
)
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
    class Meta:
        model = Project
        fields = ["slug", *services.PROJECT_SETTINGS, "created_at"]
        read_only_fields = ["created_at"]
        # The model's check constraints, as field bounds so that errors name the field.
        extra_kwargs = {
            "judgments_per_pair": {"min_value": 1},
            "strength_levels": {"min_value": 0, "max_value": 10},
            "lease_seconds": {"min_value": 10},
            "gold_fraction": {"min_value": 0.0, "max_value": 1.0},
            "very_fast_ms": {"min_value": 0, "max_value": MAX_VERY_FAST_MS},
        }

    def validate_slug(self, value: str) -> str:
        if self.instance is not None and value != self.instance.slug:
            raise serializers.ValidationError(
                "The slug cannot change: URLs and exports name the project by it."
            )
        return value


class ImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class PairSerializer(serializers.ModelSerializer):
    class Meta:
        model = Pair
        fields = [
            "id",
            "external_id",
            "prompt",
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


class JudgmentRecordedSerializer(serializers.Serializer):
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


class JudgmentsExportQuerySerializer(ExportQuerySerializer):
    raw = serializers.BooleanField(
        required=False,
        default=False,
        help_text="CSV only: text cells as they are. Without it a cell that starts with =, +, -, @, tab or "
        "carriage return gets a leading ' so that a spreadsheet shows it instead of running it as a formula.",
    )


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
