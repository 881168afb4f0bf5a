"""Serializers of the training-run and scoring endpoints (API.md: Training runs and scoring).

The training settings are generated from rm_training.TrainingConfig.describe() and checked by TrainingConfig
alone, field by field (reward_models.services.training_config_build).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation.models import MAX_EXTRA_JUDGMENTS, MAX_REVIEW_REASON, Choice, ReviewAction, Side
from rm_training import conversation
from web.api import StrictFieldsMixin

from .. import services
from ..models import ScoringStatus, TrainingRun


class SettingField(serializers.Field):
    """One TrainingConfig field of a run's request, as TrainingConfig.describe() gives it (``spec``).

    The value passes as JSON gave it: TrainingConfig judges its type and bounds, so that every way of
    starting a run refuses the same values in the same words. The schema shows the spec (SettingFieldSchema).
    """

    def __init__(self, *, spec: dict[str, Any], **kwargs: Any) -> None:
        self.spec = spec
        super().__init__(required=False, help_text=spec["help"], **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


def setting_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """A TrainingConfig field's OpenAPI 3.0 schema: its JSON type, bounds and default."""
    kind = spec["type"]
    if spec["choices"] is not None:
        schema: dict[str, Any] = {"type": "string", "enum": list(spec["choices"])}
    elif kind is bool:
        schema = {"type": "boolean"}
    elif kind is int:
        schema = {"type": "integer"}
    elif kind is float:
        schema = {"type": "number", "format": "double"}
    else:
        schema = {"type": "string"}
    for bound in ("minimum", "maximum"):
        if spec[bound] is not None:
            schema[bound] = spec[bound]
            if spec[f"exclusive_{bound}"]:
                schema["exclusiveMinimum" if bound == "minimum" else "exclusiveMaximum"] = True
    if spec["max_chars"] is not None:
        schema["maxLength"] = spec["max_chars"]
    return schema | {"default": spec["default"]}


class SettingFieldSchema(OpenApiSerializerFieldExtension):
    target_class = SettingField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        return setting_schema(self.target.spec)


class TrainingRunCreateSerializer(serializers.Serializer):
    """``project`` and any TrainingConfig field but device and progress_bar (the worker sets them); the
    others keep their defaults."""

    def get_fields(self) -> dict[str, serializers.Field]:
        settings = {spec["name"]: SettingField(spec=spec) for spec in services.user_settings()}
        return {"project": serializers.SlugField(max_length=100), **settings}

    def to_internal_value(self, data: Any) -> Any:
        values = super().to_internal_value(data)
        # Other fields pass too: TrainingConfig refuses unknown names, one error each, beside the others.
        if isinstance(data, dict):
            values |= {k: v for k, v in data.items() if k not in self.fields}
        return values


class SnapshotSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    rows = serializers.IntegerField(help_text="Judgments in the file.")
    pairs = serializers.IntegerField()
    sha256 = serializers.CharField(help_text="Of the file's bytes.")
    created_at = serializers.DateTimeField()


class TrainingRunSerializer(serializers.ModelSerializer):
    project: serializers.Field = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    dataset = serializers.SerializerMethodField(
        help_text='{"pairs", "train", "eval", "sha256"} of the data the trainer used (sha256 of its pairs); '
        "null until the run succeeded."
    )
    snapshot = SnapshotSerializer(read_only=True, allow_null=True)
    cancel_requested = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "project",
            "status",
            "progress",
            "dataset",
            "metrics",
            "human_agreement",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "sent_at",
            "send_count",
            "cancel_requested",
            "config",
            "snapshot",
            "current",
            "history",
            "epochs",
            "device",
            "bf16",
            "worker_host",
        ]
        read_only_fields = fields

    def get_dataset(self, run: TrainingRun) -> dict[str, Any] | None:
        dataset = (run.metrics or {}).get("dataset")
        return dataset if isinstance(dataset, dict) else None

    def get_cancel_requested(self, run: TrainingRun) -> bool:
        return run.cancel_requested_at is not None


class TrainingRunListSerializer(TrainingRunSerializer):
    """The list leaves out the curves and the full metrics, which can be large; the detail has them."""

    eval_accuracy = serializers.SerializerMethodField()

    class Meta(TrainingRunSerializer.Meta):
        fields = [
            f
            for f in TrainingRunSerializer.Meta.fields
            if f not in ("history", "epochs", "metrics", "config")
        ] + ["eval_accuracy"]
        read_only_fields = fields

    def get_eval_accuracy(self, run: TrainingRun) -> float | None:
        value = (run.metrics or {}).get("eval_accuracy")
        return value if isinstance(value, float) else None


class TrainingRunListQuerySerializer(serializers.Serializer):
    project = serializers.SlugField(required=False, max_length=100)


class ActivateRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    force_reason = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        trim_whitespace=True,
        help_text="Activate a run without a held-out evaluation anyway, for this reason (kept on the "
        "activation). Without it such a run is refused with 409 no_evaluation.",
    )


class ActivationSerializer(serializers.Serializer):
    project = serializers.CharField(source="project.slug")
    run = serializers.IntegerField(source="run_id")
    activated_at = serializers.DateTimeField()
    forced_reason = serializers.CharField(
        help_text="The reason given for activating a run without a held-out evaluation; empty otherwise."
    )


class ScoreRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    project = serializers.SlugField(max_length=100)
    prompt = serializers.JSONField(
        help_text='A non-empty string, or a conversation: a list of messages {"role", "content"} ending with '
        "the user's (the rules of Importing pairs)."
    )
    # The count and the characters are checked by the service (413 past the limits), not here (400).
    responses = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), allow_empty=True
    )

    def validate_prompt(self, value: Any) -> Any:
        problems = conversation.prompt_problems(value)
        if problems:
            raise serializers.ValidationError(
                [
                    f"{where}: {message}." if where else f"{message[0].upper()}{message[1:]}."
                    for where, message in problems
                ]
            )
        return value


class ScoreResponseSerializer(serializers.Serializer):
    model = serializers.IntegerField(help_text="The id of the training run whose model scored.")
    scores = serializers.ListField(child=serializers.FloatField(), help_text="Raw reward logits, in order.")


# The review queue


class ReviewVotesSerializer(serializers.Serializer):
    a = serializers.IntegerField()
    b = serializers.IntegerField()
    tie = serializers.IntegerField()


class ReviewJudgmentSerializer(serializers.Serializer):
    rater = serializers.CharField(help_text="The rater's pseudonym (never a username).")
    choice = serializers.ChoiceField(choices=Choice.choices)
    strength = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class ReviewPairSerializer(serializers.Serializer):
    """A pair of the review queue: its texts, the raters' votes and the model's view of the majority."""

    pair_id = serializers.IntegerField(source="pk")
    external_id = serializers.CharField(allow_null=True)
    prompt = serializers.CharField()
    response_a = serializers.CharField(allow_blank=True)
    response_b = serializers.CharField(allow_blank=True)
    model_a = serializers.CharField(allow_blank=True)
    model_b = serializers.CharField(allow_blank=True)
    votes = serializers.SerializerMethodField()
    majority = serializers.ChoiceField(choices=Side.choices, help_text="The side with the human majority.")
    margin = serializers.IntegerField(help_text="The majority's votes less the other side's.")
    probability = serializers.FloatField(
        help_text="The model's probability that the majority's side is preferred."
    )
    reward_difference = serializers.FloatField(
        help_text="The model's reward of the majority's side less the other's."
    )
    extra_judgments = serializers.IntegerField(help_text="Judgments asked for beyond the project's quota.")
    judgments = serializers.SerializerMethodField()

    @extend_schema_field(ReviewVotesSerializer)
    def get_votes(self, pair: Any) -> dict[str, int]:
        return {"a": pair.votes_a, "b": pair.votes_b, "tie": pair.votes_tie}

    @extend_schema_field(ReviewJudgmentSerializer(many=True))
    def get_judgments(self, pair: Any) -> Any:
        return ReviewJudgmentSerializer(self.context["judgments"].get(pair.pk, []), many=True).data


class ReviewActionRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    action = serializers.ChoiceField(choices=ReviewAction.choices)
    reason = serializers.CharField(max_length=MAX_REVIEW_REASON, help_text="Why: recorded with the action.")
    k = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_EXTRA_JUDGMENTS,
        help_text="more_votes only (required there): how many more judgments to ask for.",
    )


class ReviewActionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    pair_id = serializers.IntegerField()
    action = serializers.ChoiceField(choices=ReviewAction.choices)
    extra_judgments = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()
    by = serializers.CharField(source="by.get_username")
    judgment_count = serializers.IntegerField(help_text="The pair's judgments when the action was taken.")
    created_at = serializers.DateTimeField()


class PairScoringSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.IntegerField(source="run_id", help_text="The run whose model scores.")
    status = serializers.ChoiceField(choices=ScoringStatus.choices)
    total = serializers.IntegerField(help_text="Pairs to score (those the model had not scored).")
    done = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
