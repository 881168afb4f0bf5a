"""Serializers of the training-run and scoring endpoints (API.md: Training runs and scoring).

Types are checked here; the training settings themselves by rm_training.TrainingConfig, field by field
(reward_models.services.training_config_build).
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from web.api import RefuseUnknownFieldsMixin

from ..models import TrainingRun


class StrictCharField(serializers.CharField):
    """A JSON string, nothing else: DRF's CharField also takes 5 (as "5") and true (as "True")."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return str(super().to_internal_value(data))


class TrainingRunCreateSerializer(serializers.Serializer):
    """``project`` and any TrainingConfig field but device and progress_bar; others default."""

    project = serializers.SlugField(max_length=100)
    base_model = StrictCharField(required=False, max_length=500)
    # Upper bounds here, where TrainingConfig has none: a typo of a few zeros would hold a worker for years.
    epochs = serializers.IntegerField(required=False, max_value=10_000)
    learning_rate = serializers.FloatField(required=False)
    batch_size = serializers.IntegerField(required=False, max_value=1_000_000)
    max_length = serializers.IntegerField(required=False, max_value=1_000_000)
    eval_fraction = serializers.FloatField(required=False)
    seed = serializers.IntegerField(required=False)

    def to_internal_value(self, data: Any) -> Any:
        values = super().to_internal_value(data)
        # The other TrainingConfig fields pass as given: TrainingConfig checks them (and refuses unknown
        # names) with one error per field.
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


class ActivationSerializer(serializers.Serializer):
    project = serializers.CharField(source="project.slug")
    run = serializers.IntegerField(source="run_id")
    activated_at = serializers.DateTimeField()


class ScoreRequestSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    project = serializers.SlugField(max_length=100)
    prompt = StrictCharField(allow_blank=False, trim_whitespace=False)
    # The count and the characters are checked by the service (413 past the limits), not here (400).
    responses = serializers.ListField(
        child=StrictCharField(allow_blank=True, trim_whitespace=False), allow_empty=True
    )


class ScoreResponseSerializer(serializers.Serializer):
    model = serializers.IntegerField(help_text="The id of the training run whose model scored.")
    scores = serializers.ListField(child=serializers.FloatField(), help_text="Raw reward logits, in order.")
