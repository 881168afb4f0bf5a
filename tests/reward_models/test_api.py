"""The training-run and scoring endpoints without a worker: roles, validation, limits, conflicts."""

from __future__ import annotations

import pytest
from django.utils import timezone

from reward_models.models import ActiveModel, RunStatus, TrainingRun

RUNS = "/api/v1/training-runs/"
SCORE = "/api/v1/score/"


@pytest.fixture
def project(make_project, judged):
    return judged(make_project("rm"))


@pytest.fixture
def staff(admin_user, api):
    return api(admin_user)


@pytest.fixture
def rater(project, make_rater, api):
    return api(make_rater(project))


@pytest.mark.django_db
def test_staff_queue_a_run_with_settings_validated_field_by_field(project, staff):
    created = staff.post(RUNS, {"project": "rm", "epochs": 2, "learning_rate": 0.001}, format="json")
    assert created.status_code == 201, created.data
    assert created.data["status"] == "queued" and created.data["project"] == "rm"
    assert created.data["config"]["epochs"] == 2 and created.data["config"]["learning_rate"] == 0.001
    run = TrainingRun.objects.get(pk=created.data["id"])
    assert run.created_by.username == "admin"

    refused = staff.post(
        RUNS, {"project": "rm", "epochs": 0, "eval_fraction": 1.5, "warmup_ratio": "x"}, format="json"
    )
    assert refused.status_code == 400
    assert {e["field"] for e in refused.data["errors"]} == {"epochs", "eval_fraction", "warmup_ratio"}
    wrong_type = staff.post(RUNS, {"project": "rm", "epochs": "two"}, format="json")
    assert wrong_type.status_code == 400 and wrong_type.data["errors"][0]["field"] == "epochs"
    unknown = staff.post(RUNS, {"project": "rm", "dropout_please": True}, format="json")
    assert unknown.status_code == 400 and unknown.data["errors"][0]["field"] == "dropout_please"
    missing = staff.post(RUNS, {"project": "nope"}, format="json")
    assert missing.status_code == 404
    assert TrainingRun.objects.count() == 1


@pytest.mark.django_db
def test_the_list_filters_by_project_and_the_detail_has_the_curves(project, make_project, staff):
    other = make_project("other")
    mine = TrainingRun.objects.create(
        project=project, config={}, history=[{"step": 1, "loss": 0.7}], metrics={"eval_accuracy": 0.75}
    )
    TrainingRun.objects.create(project=other, config={})
    listed = staff.get(RUNS, {"project": "rm"})
    assert listed.status_code == 200
    assert [r["id"] for r in listed.data["results"]] == [mine.pk]
    assert listed.data["results"][0]["eval_accuracy"] == 0.75 and "history" not in listed.data["results"][0]
    assert len(staff.get(RUNS).data["results"]) == 2
    detail = staff.get(f"{RUNS}{mine.pk}/")
    assert detail.data["history"] == [{"step": 1, "loss": 0.7}]
    assert staff.get(f"{RUNS}999999/").status_code == 404


@pytest.mark.django_db
def test_cancel_and_activate_answer_conflicts(project, staff):
    run = TrainingRun.objects.create(project=project, config={})
    cancelled = staff.post(f"{RUNS}{run.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.data["status"] == "cancelled"
    again = staff.post(f"{RUNS}{run.pk}/cancel/")
    assert again.status_code == 409 and again.data["code"] == "run_finished"
    not_ready = staff.post(f"{RUNS}{run.pk}/activate/")
    assert not_ready.status_code == 409 and not_ready.data["code"] == "not_ready"
    finished = TrainingRun.objects.create(
        project=project,
        config={},
        status=RunStatus.SUCCEEDED,
        finished_at=timezone.now(),
        output_dir="runs/x",
    )
    # No held-out evaluation is refused first, before the model is loaded at all.
    unknown = staff.post(f"{RUNS}{finished.pk}/activate/")
    assert unknown.status_code == 409 and unknown.data["code"] == "no_evaluation"
    missing = staff.post(f"{RUNS}{finished.pk}/activate/", {"force_reason": "try"}, format="json")
    assert missing.status_code == 409 and missing.data["code"] == "model_missing"
    assert not ActiveModel.objects.exists()


@pytest.mark.django_db
def test_score_needs_an_active_model_and_takes_at_most_64_responses(project, staff):
    no_model = staff.post(SCORE, {"project": "rm", "prompt": "p", "responses": ["a", "b"]}, format="json")
    assert no_model.status_code == 409 and no_model.data["code"] == "no_active_model"
    too_many = staff.post(SCORE, {"project": "rm", "prompt": "p", "responses": ["a"] * 65}, format="json")
    assert too_many.status_code == 413 and "64" in too_many.data["detail"]
    for bad in (
        {"project": "rm", "prompt": "", "responses": ["a"]},
        {"project": "rm", "prompt": "p", "responses": "a"},
        {"project": "rm", "prompt": "p", "responses": [None]},
        {"project": "rm", "prompt": "p\u0000", "responses": ["a"]},
        '{"project": "rm", "prompt": 1e400, "responses": ["a"]}',
        '{"project": "rm", "prompt": "p", "responses": ["\\ud800"]}',
    ):
        if isinstance(bad, str):
            answer = staff.post(SCORE, bad, content_type="application/json")
        else:
            answer = staff.post(SCORE, bad, format="json")
        assert answer.status_code == 400, (bad, answer.status_code)
    unknown = staff.post(SCORE, {"project": "nope", "prompt": "p", "responses": []}, format="json")
    assert unknown.status_code == 404


@pytest.mark.django_db
def test_a_raters_token_cannot_start_cancel_activate_or_score(project, rater, api):
    run = TrainingRun.objects.create(project=project, config={})
    calls = [
        ("get", RUNS, None),
        ("post", RUNS, {"project": "rm"}),
        ("get", f"{RUNS}{run.pk}/", None),
        ("post", f"{RUNS}{run.pk}/cancel/", None),
        ("post", f"{RUNS}{run.pk}/activate/", None),
        ("post", SCORE, {"project": "rm", "prompt": "p", "responses": ["a"]}),
    ]
    for method, path, data in calls:
        assert getattr(rater, method)(path, data, format="json").status_code == 403, path
        assert getattr(api(None), method)(path, data, format="json").status_code == 401, path
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and TrainingRun.objects.count() == 1


@pytest.mark.django_db
def test_huge_numbers_get_a_clear_answer(project, staff):
    for field, value in (("epochs", 10**30), ("batch_size", 10**9), ("max_length", 10**12), ("seed", 2**70)):
        answer = staff.post(RUNS, {"project": "rm", field: value}, format="json")
        assert answer.status_code == 400, field
        assert answer.data["errors"][0]["field"] == field
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_the_run_list_takes_the_same_queries_for_any_number_of_runs(
    project, staff, django_assert_num_queries
):
    for _ in range(5):
        TrainingRun.objects.create(project=project, config={}, history=[{"step": 1}] * 50)
    # 1. the token and its user; 2. the project (visible to the caller); 3. the page of runs with their
    # project and snapshot.
    with django_assert_num_queries(3):
        listed = staff.get(RUNS, {"project": "rm"})
    assert len(listed.data["results"]) == 5


@pytest.mark.django_db
def test_score_refuses_texts_over_the_character_limits_with_413(project, staff, settings):
    settings.PAIRWISE_SCORE_MAX_TEXT_CHARS = 100
    settings.PAIRWISE_SCORE_MAX_REQUEST_CHARS = 250
    long_prompt = staff.post(SCORE, {"project": "rm", "prompt": "p" * 101, "responses": []}, format="json")
    assert long_prompt.status_code == 413 and long_prompt.data["code"] == "too_large"
    assert "prompt" in long_prompt.data["detail"] and "100 characters per text" in long_prompt.data["detail"]
    long_response = staff.post(
        SCORE, {"project": "rm", "prompt": "p", "responses": ["a", "b" * 101]}, format="json"
    )
    assert long_response.status_code == 413 and "responses[1]" in long_response.data["detail"]
    in_all = staff.post(SCORE, {"project": "rm", "prompt": "p", "responses": ["b" * 100] * 3}, format="json")
    assert in_all.status_code == 413 and "250 characters per request" in in_all.data["detail"]
    within = staff.post(
        SCORE, {"project": "rm", "prompt": "p" * 100, "responses": ["b" * 100]}, format="json"
    )
    assert within.status_code == 409  # past the limits: no active model here


@pytest.mark.django_db
def test_score_takes_only_strings_and_known_fields(project, staff):
    for bad in (
        {"project": "rm", "prompt": 5, "responses": ["a"]},
        {"project": "rm", "prompt": "p", "responses": [1, 2]},
        {"project": "rm", "prompt": True, "responses": ["a"]},
    ):
        answer = staff.post(SCORE, bad, format="json")
        assert answer.status_code == 400, bad
        # The prompt may also be a conversation: "Must be a string or a list of messages."
        assert "Must be a string" in str(answer.data), answer.data
    unknown = staff.post(
        SCORE, {"project": "rm", "prompt": "p", "responses": ["a"], "temp": 1}, format="json"
    )
    assert unknown.status_code == 400 and unknown.data["errors"][0]["field"] == "temp"


@pytest.mark.django_db
def test_a_runs_base_model_must_be_a_string(project, staff):
    answer = staff.post(RUNS, {"project": "rm", "base_model": 123}, format="json")
    assert answer.status_code == 400 and answer.data["errors"][0]["field"] == "base_model"
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_a_project_without_usable_pairs_is_refused_when_the_run_is_submitted(
    make_project, make_pairs, make_rater, staff
):
    from .conftest import judge

    empty = make_project("empty")
    refused = staff.post(RUNS, {"project": "empty"}, format="json")
    assert refused.status_code == 409 and refused.data["code"] == "no_usable_pairs"
    assert "no judgments" in refused.data["detail"]
    make_pairs(empty, 2)
    for _ in range(2):
        judge(empty, make_rater(empty), "tie")
    all_ties = staff.post(RUNS, {"project": "empty"}, format="json")
    assert all_ties.status_code == 409 and all_ties.data["code"] == "no_usable_pairs"
    assert 'ties="drop"' in all_ties.data["detail"]
    assert not TrainingRun.objects.exists()
    half = staff.post(RUNS, {"project": "empty", "ties": "half"}, format="json")
    assert half.status_code == 201  # with ties="half" a tie is a training example


@pytest.mark.django_db
def test_the_same_run_submitted_twice_in_a_row_is_queued_once(project, staff):
    first = staff.post(RUNS, {"project": "rm", "epochs": 2}, format="json")
    assert first.status_code == 201
    again = staff.post(RUNS, {"project": "rm", "epochs": 2}, format="json")
    assert again.status_code == 409 and again.data["code"] == "duplicate_run"
    assert again.data["run"] == first.data["id"] and f"Run {first.data['id']}" in again.data["detail"]
    other = staff.post(RUNS, {"project": "rm", "epochs": 3}, format="json")
    assert other.status_code == 201
    assert TrainingRun.objects.count() == 2
