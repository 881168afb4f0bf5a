"""The "Train reward model" form of the admin: base model and hyperparameters, read from
rm_training.TrainingConfig (its defaults, help texts and types) and checked by it field by field, through
the same service as the API (reward_models.services.training_config_build)."""

from __future__ import annotations

import typing
from typing import Any

from django import forms

from annotation.models import Project
from rm_training.config import TrainingConfig
from web.errors import Invalid

from . import services
from .models import AutoTrainPolicy, DatasetSnapshot

# The settings the form offers, in order; the others keep TrainingConfig's defaults (the API sets any).
FORM_FIELDS = (
    "base_model",
    "epochs",
    "learning_rate",
    "batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "eval_fraction",
    "warmup_ratio",
    "weight_decay",
    "ties",
    "use_votes",
    "seed",
)


def upper_bounds() -> dict[str, Any]:
    """The API's upper bounds on settings that TrainingConfig leaves open (a typo of a few zeros in epochs
    would hold a worker for years), from the API's serializer: one home for both ways in."""
    from .api.serializers import TrainingRunCreateSerializer

    fields = TrainingRunCreateSerializer().fields
    bounds = {name: getattr(f, "max_value", None) for name, f in fields.items()}
    return {name: bound for name, bound in bounds.items() if bound is not None}


def _form_field(kind: Any, default: Any, help_text: str, max_value: Any = None) -> forms.Field:
    """A loosely typed field: Django parses the type; TrainingConfig decides what is allowed, under the
    API's upper bounds."""
    common: dict[str, Any] = {"initial": default, "help_text": help_text}
    if typing.get_origin(kind) is typing.Literal:
        return forms.ChoiceField(choices=[(v, v) for v in typing.get_args(kind)], **common)
    if kind is bool:
        return forms.BooleanField(required=False, **common)
    if kind is int:
        return forms.IntegerField(max_value=max_value, **common)
    if kind is float:
        return forms.FloatField(**common)
    return forms.CharField(max_length=500, strip=False, **common)


class TrainRunForm(forms.Form):
    snapshot = forms.ModelChoiceField(
        queryset=DatasetSnapshot.objects.none(),
        required=False,
        empty_label="A new snapshot of every judgment, taken when the run starts",
        help_text="The judgments to train on.",
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        snapshot = self.fields["snapshot"]
        assert isinstance(snapshot, forms.ModelChoiceField)
        snapshot.queryset = DatasetSnapshot.objects.filter(project=project).order_by("-created_at", "-id")
        described = {d["name"]: d for d in TrainingConfig.describe()}
        bounds = upper_bounds()
        for name in FORM_FIELDS:
            d = described[name]
            self.fields[name] = _form_field(d["type"], d["default"], d["help"], bounds.get(name))
        self.config: TrainingConfig | None = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # The fields that parsed are checked even when another did not, so every error shows at once.
        values = {name: cleaned[name] for name in FORM_FIELDS if name in cleaned}
        try:
            config = services.training_config_build(values)
        except Invalid as refused:
            for error in refused.errors:
                field = error.get("field")
                message = f"{field} {error.get('message', '')}".strip()
                self.add_error(field if field in self.fields else None, message)
            if not refused.errors:
                self.add_error(None, refused.detail)
        else:
            self.config = config if len(values) == len(FORM_FIELDS) else None
        return cleaned


class AutoTrainPolicyForm(forms.ModelForm):
    """A policy's settings, checked as the beat task will use them: its runs' config by TrainingConfig
    (field by field, as the Train form), and an enabled policy needs a trigger."""

    class Meta:
        model = AutoTrainPolicy
        fields = ["project", "enabled", "after_new_judgments", "every_hours", "config"]

    def clean_config(self) -> dict[str, Any]:
        config = self.cleaned_data.get("config")
        if not isinstance(config, dict):
            raise forms.ValidationError('A JSON object of TrainingConfig fields, e.g. {"epochs": 2}.')
        try:
            services.training_config_build(config)
        except Invalid as refused:
            raise forms.ValidationError(
                [f"{e.get('field', '')} {e.get('message', '')}".strip() for e in refused.errors]
                or refused.detail
            ) from None
        return config

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("enabled") and not (cleaned.get("after_new_judgments") or cleaned.get("every_hours")):
            raise forms.ValidationError("An enabled policy needs a number of new judgments, hours, or both.")
        return cleaned
