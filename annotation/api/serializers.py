"""Request validation and response shapes for the REST API. No business rules: those are in services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation import services
from annotation.models import Assignment, Choice, Pair, Project, ShownChoice


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class RaterCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(trim_whitespace=False, write_only=True)
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class RaterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class ProjectRatersAddSerializer(serializers.Serializer):
    usernames = serializers.ListField(child=serializers.CharField(), allow_empty=False, max_length=10_000)


class ProjectRatersAddedSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.CharField(), help_text="Usernames newly added.")


class ProjectRaterSerializer(serializers.Serializer):
    username = serializers.CharField()
    judgments = serializers.IntegerField()
    last_judgment_at = serializers.DateTimeField(allow_null=True)
    holding_assignment = serializers.BooleanField()
    added_at = serializers.DateTimeField()


class ProjectSerializer(serializers.ModelSerializer):
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
        # From the view: the assignment's own project attribute may not be loaded.
        return RatingSettingsSerializer(self.context["project"]).data


class JudgmentRequestSerializer(serializers.Serializer):
    """Types only; what a project allows (ties, strength, rationale) is checked by judgment_record."""

    choice = serializers.ChoiceField(choices=ShownChoice.choices)
    strength = serializers.IntegerField(required=False, allow_null=True, default=None)
    rationale = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    client_time_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0)


class JudgmentRecordedSerializer(serializers.Serializer):
    judgment = serializers.IntegerField(source="pk")
    choice = serializers.ChoiceField(choices=Choice.choices)
    strength = serializers.IntegerField(allow_null=True)
    time_on_task_ms = serializers.IntegerField(allow_null=True)


class SkipRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class SkippedSerializer(serializers.Serializer):
    assignment = serializers.IntegerField(source="pk")
    status = serializers.CharField()
