"""/api/v1/score/ takes a conversation: a chat model's run scores it through its chat template, exactly as
RewardScorer and the command line do; a bad conversation is a 400 that names the message."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from django.utils import timezone

from reward_models import files
from reward_models.models import RunStatus, TrainingRun
from rm_training.cli import main
from rm_training.config import TrainingConfig
from rm_training.data import Comparison
from rm_training.scoring import RewardScorer
from rm_training.train import train
from tests.rm_training.conftest import tiny_chat_dir  # noqa: F401 (fixture)

HISTORY = [
    {"role": "system", "content": "careful quiet answer"},
    {"role": "user", "content": "question 1 river"},
    {"role": "assistant", "content": "the stone"},
    {"role": "user", "content": "question 2 cloud"},
]


@pytest.fixture
def chat_run(make_project, tiny_chat_dir) -> TrainingRun:  # noqa: F811 (the fixture imported above)
    project = make_project("chat")
    run = TrainingRun.objects.create(project=project, config={})
    run.output_dir = f"runs/{run.pk}/model"
    examples = [
        Comparison(
            prompt="",
            messages=HISTORY,
            chosen=f"green {i} excellent",
            rejected=f"green {i} stone",
            pair_id=str(i),
        )
        for i in range(16)
    ]
    config = TrainingConfig(base_model=str(tiny_chat_dir), max_length=64, batch_size=8, device="cpu")
    run.metrics = train(
        replace(config, bf16=False), examples=examples, output_dir=files.absolute(run.output_dir)
    )
    run.status, run.finished_at = RunStatus.SUCCEEDED, timezone.now()
    run.save()
    return run


def test_score_takes_a_conversation_and_scores_it_as_the_cli_and_the_scorer_do(
    chat_run, admin_user, api, tmp_path, capsys
) -> None:
    staff = api(admin_user)
    # The run trained on every pair (no held-out evaluation): activation asks for a stated reason.
    activate = staff.post(
        f"/api/v1/training-runs/{chat_run.pk}/activate/", {"force_reason": "scoring test"}, format="json"
    )
    assert activate.status_code == 200
    responses = ["green excellent", "green stone"]
    scored = staff.post(
        "/api/v1/score/", {"project": "chat", "prompt": HISTORY, "responses": responses}, format="json"
    )
    assert scored.status_code == 200, scored.json()
    directory = files.absolute(chat_run.output_dir)
    direct = RewardScorer(directory, device="cpu").score(HISTORY, responses)
    assert scored.data["scores"] == pytest.approx(direct, abs=1e-6)
    path = tmp_path / "conversation.json"
    path.write_text(json.dumps(HISTORY), encoding="utf-8")
    arguments = ["score", "--model", str(directory), "--conversation", str(path), "--json"]
    assert main([*arguments, "--response", responses[0], "--response", responses[1]]) == 0
    assert json.loads(capsys.readouterr().out)["scores"] == pytest.approx(direct, abs=1e-6)
    # A plain prompt is still text, and differs from the conversation.
    plain = staff.post(
        "/api/v1/score/",
        {"project": "chat", "prompt": "question 2 cloud", "responses": responses},
        format="json",
    )
    assert plain.status_code == 200 and plain.data["scores"] != scored.data["scores"]


def test_a_bad_conversation_is_a_400_naming_the_message(chat_run, admin_user, api) -> None:
    staff = api(admin_user)
    bad = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    response = staff.post(
        "/api/v1/score/", {"project": "chat", "prompt": bad, "responses": ["x"]}, format="json"
    )
    assert response.status_code == 400
    assert "1.role: the last message must be the user's." in json.dumps(response.json())
    empty = staff.post("/api/v1/score/", {"project": "chat", "prompt": "", "responses": ["x"]}, format="json")
    assert empty.status_code == 400


def test_the_review_queue_scores_a_conversation_as_the_scorer_does(chat_run) -> None:
    # The pair's prompt is the text rendering; its messages are what the model was trained and is scored on.
    from annotation.models import Pair
    from reward_models.models import PairScore
    from reward_models.services import pair_scores_compute
    from rm_training.conversation import render

    pair = Pair.objects.create(
        project=chat_run.project,
        prompt=render(HISTORY),
        messages=HISTORY,
        response_a="green excellent",
        response_b="green stone",
        content_sha256="x" * 64,
    )
    assert pair_scores_compute(run=chat_run, pairs=Pair.objects.filter(pk=pair.pk)) == 1
    scorer = RewardScorer(files.absolute(chat_run.output_dir), device="cpu")
    a, b = scorer.score(HISTORY, ["green excellent", "green stone"])
    assert PairScore.objects.get(pair=pair).reward_difference == pytest.approx(a - b, abs=1e-5)
