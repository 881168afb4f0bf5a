"""Run settings have one home, TrainingConfig: every surface that sets a run (the trainer's CLI, the REST
API and its OpenAPI schema, the admin's Train and auto-train policy forms, the management command) shows
each field with the bounds, default and help that TrainingConfig.describe() gives, and refuses what is past
a bound, naming the field."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from django import forms
from django.core.management import CommandError, call_command
from drf_spectacular.generators import SchemaGenerator

from annotation.models import Project
from reward_models.admin_forms import AutoTrainPolicyForm, TrainRunForm
from reward_models.management.commands.train_reward_model import Command
from reward_models.models import TrainingRun
from reward_models.services.runs import SYSTEM_FIELDS
from rm_training.cli import build_parser, main
from rm_training.config import TrainingConfig, default_and_bounds, setting_help

SPECS = TrainingConfig.describe()
USER_SPECS = [spec for spec in SPECS if spec["name"] not in SYSTEM_FIELDS]


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in parser._actions}


def check_option(action: argparse.Action, spec: dict[str, Any]) -> None:
    """An option generated from a spec: its help holds the spec's help, default and bounds; argparse
    parses its type (or offers its choices) and leaves the value to TrainingConfig."""
    assert action.help == setting_help(spec)
    assert f"default: {spec['default']}" in action.help and spec["bounds"] in action.help
    assert action.default is None
    if spec["type"] is bool:
        assert isinstance(action, argparse.BooleanOptionalAction)
    elif spec["choices"] is not None:
        assert tuple(action.choices or ()) == spec["choices"]
    else:
        assert action.type is spec["type"]


def test_describe_gives_every_field_its_bounds() -> None:
    for spec in SPECS:
        bounds = {"minimum", "maximum", "exclusive_minimum", "exclusive_maximum", "choices", "max_chars"}
        assert bounds <= set(spec)
        if spec["type"] in (int, float):
            assert spec["minimum"] is not None, spec["name"]  # every number has a lower bound
    bounded = {spec["name"]: spec["maximum"] for spec in SPECS}
    assert bounded["epochs"] == 10_000 and bounded["batch_size"] == 1_000_000
    assert bounded["max_length"] == 1_000_000


def test_the_cli_offers_every_field_as_describe_gives_it() -> None:
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    train = commands.choices["train"]
    actions = options(train)
    for spec in SPECS:
        check_option(actions[spec["name"]], spec)


def test_the_command_offers_every_user_setting_as_the_cli_does() -> None:
    actions = options(Command().create_parser("manage.py", "train_reward_model"))
    for spec in USER_SPECS:
        check_option(actions[spec["name"]], spec)
    assert not SYSTEM_FIELDS & set(actions)


def test_the_api_schema_shows_every_user_setting_as_describe_gives_it() -> None:
    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    properties = schemas["TrainingRunCreate"]["properties"]
    assert set(properties) == {"project"} | {spec["name"] for spec in USER_SPECS}
    json_types = {bool: "boolean", int: "integer", float: "number", str: "string"}
    for spec in USER_SPECS:
        schema = dict(properties[spec["name"]])
        assert schema.pop("description") == spec["help"]
        assert schema.pop("default") == spec["default"]
        if spec["choices"] is not None:
            (ref,) = schema.pop("allOf")
            assert schemas[ref["$ref"].rsplit("/", 1)[1]]["enum"] == list(spec["choices"])
            assert not schema
            continue
        expected: dict[str, Any] = {"type": json_types[spec["type"]]}
        if spec["type"] is float:
            expected["format"] = "double"
        for bound in ("minimum", "maximum"):
            if spec[bound] is not None:
                expected[bound] = spec[bound]
        if spec["exclusive_minimum"]:
            expected["exclusiveMinimum"] = True
        if spec["exclusive_maximum"]:
            expected["exclusiveMaximum"] = True
        if spec["max_chars"] is not None:
            expected["maxLength"] = spec["max_chars"]
        assert schema == expected, spec["name"]


def test_the_admin_forms_show_each_setting_as_describe_gives_it() -> None:
    form = TrainRunForm(project=Project(pk=1, slug="p"))
    specs = {spec["name"]: spec for spec in SPECS}
    assert form.settings == [spec["name"] for spec in USER_SPECS]  # every setting a run's request may hold
    for name in form.settings:
        spec, field = specs[name], form.fields[name]
        assert field.help_text == setting_help(spec)
        assert field.initial == spec["default"]
        attrs = field.widget.attrs
        for attr, bound in (("min", "minimum"), ("max", "maximum")):
            shown = spec[bound] is not None and not spec[f"exclusive_{bound}"]
            assert attrs.get(attr) == (spec[bound] if shown else None), (name, attr)
        assert attrs.get("maxlength") == spec["max_chars"]
        if spec["choices"] is not None:
            assert isinstance(field, forms.ChoiceField)
            assert [value for value, _ in field.choices] == list(spec["choices"])
    config_help = AutoTrainPolicyForm().fields["config"].help_text
    for spec in USER_SPECS:
        assert f"{spec['name']} ({default_and_bounds(spec)})" in config_help
    assert not any(f"{name} (" in config_help for name in SYSTEM_FIELDS)


# --- each surface refuses a value past a bound, naming the field ------------------------------------------


def test_the_cli_refuses_a_value_past_a_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--data", str(tmp_path / "x.jsonl"), "--output", str(tmp_path / "out")]
    assert main([*args, "--epochs", "10001"]) == 2
    assert capsys.readouterr().err == "error: epochs must be at most 10000\n"


@pytest.mark.django_db
def test_the_api_refuses_a_value_past_a_bound(make_project, admin_user, api) -> None:
    make_project("rm")
    answer = api(admin_user).post(
        "/api/v1/training-runs/", {"project": "rm", "batch_size": 1_000_001}, format="json"
    )
    assert answer.status_code == 400
    assert answer.data["errors"] == [{"field": "batch_size", "message": "must be at most 1000000"}]
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_the_train_form_refuses_a_value_past_a_bound(make_project) -> None:
    values = {spec["name"]: str(spec["default"]) for spec in USER_SPECS}
    form = TrainRunForm(values | {"gradient_accumulation_steps": "1000001"}, project=make_project())
    assert not form.is_valid()
    assert form.errors == {
        "gradient_accumulation_steps": ["gradient_accumulation_steps must be at most 1000000"]
    }


@pytest.mark.django_db
def test_the_policy_form_refuses_a_value_past_a_bound(make_project) -> None:
    form = AutoTrainPolicyForm(
        {"project": make_project().pk, "every_hours": "6", "config": '{"eval_batch_size": 1000001}'}
    )
    assert not form.is_valid()
    assert form.errors == {"config": ["eval_batch_size must be at most 1000000"]}


@pytest.mark.django_db
def test_the_command_refuses_a_value_past_a_bound(make_project) -> None:
    project = make_project()
    with pytest.raises(CommandError, match=r"^--max-length: must be at most 1000000$"):
        call_command("train_reward_model", project.slug, "--max-length", "1000001")
    assert not TrainingRun.objects.exists()
