"""The "Train reward model" form of the admin and the auto-train policy form. Their training settings are
generated from rm_training.TrainingConfig.describe() (type, default, help, bounds) and checked by
TrainingConfig alone, field by field, through the same service as the API
(reward_models.services.training_config_build)."""

from __future__ import annotations

from typing import Any

from django import forms

from annotation.models import Project
from rm_training import jsonl
from rm_training.config import TrainingConfig, default_and_bounds, setting_help
from web.errors import Invalid

from . import services
from .models import AutoTrainPolicy, DatasetSnapshot


def setting_form_field(spec: dict[str, Any]) -> forms.Field:
    """A TrainingConfig field as a form field: Django parses the type, TrainingConfig judges the value. The
    bounds show in the help and, where the browser can check them (not an exclusive one), in its input."""
    # Not required: a field left blank keeps TrainingConfig's default (the form shows it filled in).
    common: dict[str, Any] = {"initial": spec["default"], "help_text": setting_help(spec), "required": False}
    kind = spec["type"]
    if spec["choices"] is not None:
        return forms.ChoiceField(choices=[(v, v) for v in spec["choices"]], **common)
    if kind is bool:
        return forms.BooleanField(**common)
    if kind is str:
        attrs = {"maxlength": spec["max_chars"]} if spec["max_chars"] is not None else {}
        return forms.CharField(strip=False, widget=forms.TextInput(attrs=attrs), **common)
    attrs = {
        attr: spec[bound]
        for attr, bound in (("min", "minimum"), ("max", "maximum"))
        if spec[bound] is not None and not spec[f"exclusive_{bound}"]
    }
    number = forms.IntegerField if kind is int else forms.FloatField
    return number(widget=forms.NumberInput(attrs=attrs), **common)


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
        # Every setting a run's request may hold, in TrainingConfig's order and groups (data, model, ...).
        self.setting_groups: dict[str, list[str]] = {}
        for spec in services.user_settings():
            self.fields[spec["name"]] = setting_form_field(spec)
            self.setting_groups.setdefault(spec["group"], []).append(spec["name"])
        self.settings = [name for names in self.setting_groups.values() for name in names]
        self.config: TrainingConfig | None = None

    def fieldsets(self) -> list[tuple[str, list[forms.BoundField]]]:
        """The snapshot, then the settings under their group's name, for the template."""
        groups = [
            (group.capitalize(), [self[name] for name in names])
            for group, names in self.setting_groups.items()
        ]
        return [("Data to train on", [self["snapshot"]]), *groups]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # The fields that parsed are checked even when another did not, so every error shows at once; a
        # blank one is left out, to take its default.
        given = {name: cleaned[name] for name in self.settings if name in cleaned}
        values = {name: value for name, value in given.items() if value is not None and value != ""}
        try:
            config = services.training_config_build(values)
        except Invalid as refused:
            for error in refused.errors:
                self.add_error(error["field"], f"{error['field']} {error['message']}")
        else:
            self.config = config if len(given) == len(self.settings) else None
        return cleaned


class AutoTrainPolicyForm(forms.ModelForm):
    """A policy's settings, checked as the beat task will use them: its runs' config by TrainingConfig
    (field by field, as the Train form), and an enabled policy needs a trigger. The config's help lists the
    settings a policy may hold, from TrainingConfig.describe()."""

    class Meta:
        model = AutoTrainPolicy
        fields = ["project", "enabled", "after_new_judgments", "every_hours", "config"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = "; ".join(
            f"{spec['name']} ({default_and_bounds(spec)})" for spec in services.user_settings()
        )
        self.fields["config"].help_text = f"{self.fields['config'].help_text} Settings: {settings}."

    def clean_config(self) -> dict[str, Any]:
        config = self.cleaned_data.get("config")
        if not isinstance(config, dict):
            raise forms.ValidationError('A JSON object of TrainingConfig fields, e.g. {"epochs": 2}.')
        # As the API's parser: a NUL would reach PostgreSQL's jsonb as a server error.
        problems = [f"{jsonl.dotted(where)}: {problem}." for where, problem in jsonl.text_problems(config)]
        if problems:
            raise forms.ValidationError(problems)
        try:
            services.training_config_build(config)
        except Invalid as refused:
            raise forms.ValidationError([f"{e['field']} {e['message']}" for e in refused.errors]) from None
        return config

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("enabled") and not (cleaned.get("after_new_judgments") or cleaned.get("every_hours")):
            raise forms.ValidationError("An enabled policy needs a number of new judgments, hours, or both.")
        return cleaned
