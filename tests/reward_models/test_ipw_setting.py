"""The trainer's ``ipw`` setting travels through every surface generated from TrainingConfig: the REST API
(and its schema), the admin's Train form, the management command and the trainer's CLI; off by default."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from reward_models.admin_forms import TrainRunForm
from reward_models.models import TrainingRun
from reward_models.services import user_settings
from rm_training.cli import _config_from_args, build_parser
from rm_training.config import TrainingConfig

pytestmark = pytest.mark.django_db


def test_ipw_is_a_setting_off_by_default_with_its_help():
    (spec,) = [spec for spec in TrainingConfig.describe() if spec["name"] == "ipw"]
    assert (spec["type"], spec["default"], spec["group"]) == (bool, False, "loss")
    assert "1/propensity" in spec["help"]
    assert "ipw" in {spec["name"] for spec in user_settings()}  # the API, forms and command offer it
    assert TrainingConfig().ipw is False
    assert TrainingConfig.from_dict({"ipw": True}).ipw is True
    with pytest.raises(Exception, match="ipw must be true or false"):
        TrainingConfig.from_dict({"ipw": 1})


def test_the_api_queues_a_run_with_ipw_and_refuses_a_non_boolean(make_project, judged, admin_user, api):
    judged(make_project("rm"))
    staff = api(admin_user)
    created = staff.post("/api/v1/training-runs/", {"project": "rm", "ipw": True}, format="json")
    assert created.status_code == 201, created.data
    assert created.data["config"]["ipw"] is True
    assert TrainingRun.objects.get(pk=created.data["id"]).config["ipw"] is True
    refused = staff.post("/api/v1/training-runs/", {"project": "rm", "ipw": "yes"}, format="json")
    assert refused.status_code == 400
    assert refused.data["errors"] == [{"field": "ipw", "message": 'must be true or false, not "yes"'}]


def test_the_train_form_and_the_command_set_ipw(make_project, judged):
    project = judged(make_project("rm"))
    defaults = {spec["name"]: str(spec["default"]) for spec in user_settings() if spec["type"] is not bool}
    checked = TrainRunForm({**defaults, "ipw": "on"}, project=project)
    assert checked.is_valid(), checked.errors
    assert checked.config is not None and checked.config.ipw is True
    unchecked = TrainRunForm(defaults, project=project)
    assert unchecked.is_valid() and unchecked.config is not None and unchecked.config.ipw is False

    call_command("train_reward_model", "rm", "--ipw", stdout=io.StringIO())
    assert TrainingRun.objects.get().config["ipw"] is True


def test_the_cli_takes_ipw_and_no_ipw_over_a_config_file(tmp_path: Path):
    config = tmp_path / "config.json"
    config.write_text('{"ipw": true}')
    parser = build_parser()
    base = ["train", "--data", "d.jsonl", "--output", "o"]
    assert _config_from_args(parser.parse_args(base)).ipw is False
    assert _config_from_args(parser.parse_args([*base, "--ipw"])).ipw is True
    assert _config_from_args(parser.parse_args([*base, "--config", str(config)])).ipw is True
    assert _config_from_args(parser.parse_args([*base, "--config", str(config), "--no-ipw"])).ipw is False
