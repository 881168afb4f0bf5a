"""From a rater's click to a scoring model, through a real Celery worker process and Redis: judgments
recorded through the API, a run started through the API and trained by the worker on the tiny model,
activated, and /score giving what the saved directory gives when loaded directly. Then cancel, failure,
a lost worker and a message delivered twice."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from annotation import services as annotation_services
from reward_models import files, services, tasks
from reward_models.models import ActiveModel, DatasetSnapshot, RunStatus, TrainingRun
from rm_training.scoring import RewardScorer
from tests.rm_training.conftest import MARKER, marker_comparisons

from .conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RUNS = "/api/v1/training-runs/"
FAST = {"max_length": 48, "batch_size": 8, "learning_rate": 3e-3, "eval_fraction": 0.25, "bf16": False}


def _pairs(n: int) -> list[dict]:
    """Pairs whose response A carries the marker word in even ones and B in odd ones."""
    items = []
    for i, c in enumerate(marker_comparisons(n, seed=3)):
        a, b = (c.chosen, c.rejected) if i % 2 == 0 else (c.rejected, c.chosen)
        items.append({"external_id": f"x{i}", "prompt": c.prompt, "response_a": a, "response_b": b})
    return items


def _judged_project(make_project, n_pairs: int = 32, raters: int = 2):
    """A project whose judgments (imported, for speed) all prefer the response with the marker."""
    project = make_project(judgments_per_pair=raters)
    items = _pairs(n_pairs)
    annotation_services.pairs_import(project=project, items=items)
    judgments = [
        {
            "pair": item["external_id"],
            "rater": f"r{r}",
            "choice": "a" if MARKER in item["response_a"] else "b",
        }
        for item in items
        for r in range(raters)
    ]
    annotation_services.judgments_import(project=project, items=judgments)
    return project


def _finished(run_id: int) -> TrainingRun | None:
    run = TrainingRun.objects.get(pk=run_id)
    return run if run.is_finished else None


def test_judgments_through_the_api_become_a_model_that_scores(
    training_worker, e2e_settings, tiny_bert_dir, make_project, make_rater, admin_user, api
):
    staff = api(admin_user)
    project = make_project("e2e", judgments_per_pair=2, allow_tie=False)
    assert staff.post("/api/v1/projects/e2e/pairs/", _pairs(24), format="json").status_code == 201
    for _ in range(2):
        client = api(make_rater(project))
        while (served := client.post("/api/v1/projects/e2e/next/", {}, format="json")).status_code == 200:
            choice = "left" if MARKER in served.data["left"] else "right"
            answer = client.post(
                f"/api/v1/assignments/{served.data['assignment']}/judgment/",
                {"choice": choice},
                format="json",
            )
            assert answer.status_code == 201
    assert project.judgments.count() == 48

    created = staff.post(
        RUNS,
        {"project": "e2e", "base_model": str(tiny_bert_dir), "epochs": 2, "seed": 1, **FAST},
        format="json",
    )
    assert created.status_code == 201 and created.data["status"] == "queued"
    run_id = created.data["id"]
    run = wait_for(lambda: _finished(run_id), what="the run to finish")
    assert run.status == RunStatus.SUCCEEDED, run.error

    detail = staff.get(f"{RUNS}{run_id}/").data
    assert detail["progress"] == 1.0 and detail["error"] == ""
    assert detail["metrics"]["eval_accuracy"] is not None and detail["metrics"]["steps"] >= 4
    assert detail["dataset"]["pairs"] == 24
    assert [h["step"] for h in detail["history"]] == list(range(1, detail["metrics"]["steps"] + 1))
    assert [e["epoch"] for e in detail["epochs"]] == [1, 2]
    assert detail["device"] == "cpu" and detail["bf16"] is False and detail["worker_host"]
    assert detail["snapshot"]["rows"] == 48 and detail["snapshot"]["pairs"] == 24
    # The raters' agreement on the snapshot: None until the agreement statistics (issue 10) are wired in.
    assert "human_agreement" in detail
    assert detail["started_at"] <= detail["finished_at"] and detail["heartbeat_at"]
    snapshot_bytes = files.absolute(run.snapshot.file).read_bytes()
    exported = b"".join(staff.get("/api/v1/projects/e2e/export/judgments.jsonl").streaming_content)
    assert snapshot_bytes == exported

    activated = staff.post(f"{RUNS}{run_id}/activate/")
    assert activated.status_code == 200 and activated.data == {
        "project": "e2e",
        "run": run_id,
        "activated_at": activated.data["activated_at"],
        "forced_reason": "",
    }
    assert ActiveModel.objects.get(project=project).run_id == run_id

    prompt = "question <b>bold</b> " + "river stone"
    responses = ["the quiet river", f"the {MARKER} river", "", "<script>alert(1)</script>"]
    scored = staff.post(
        "/api/v1/score/", {"project": "e2e", "prompt": prompt, "responses": responses}, format="json"
    )
    assert scored.status_code == 200 and scored.data["model"] == run_id
    direct = RewardScorer(files.absolute(run.output_dir), device="cpu").score(prompt, responses)
    assert scored.data["scores"] == pytest.approx(direct, abs=1e-5)
    assert len(set(direct)) > 1


def test_cancel_during_training_ends_the_run_cancelled_and_frees_the_worker(
    training_worker, e2e_settings, tiny_bert_dir, make_project, admin_user, api
):
    staff = api(admin_user)
    project = _judged_project(make_project)
    long = services.training_run_create(
        project=project, config={"base_model": str(tiny_bert_dir), "epochs": 2000, **FAST}
    )
    wait_for(lambda: TrainingRun.objects.get(pk=long.pk).history, what="training steps")
    assert staff.post(f"{RUNS}{long.pk}/cancel/").status_code == 200
    run = wait_for(lambda: _finished(long.pk), timeout=60, what="the cancel")
    assert run.status == RunStatus.CANCELLED and run.error == ""
    assert 0 < run.progress < 0.5
    model_dir = files.absolute(run.output_dir)
    assert not model_dir.exists() or not any(model_dir.iterdir())  # the trainer wrote nothing

    # The worker is free: the next run is taken at once, and an error ends it failed with the message.
    broken = services.training_run_create(project=project, config={"base_model": "/no/such/model", **FAST})
    run = wait_for(lambda: _finished(broken.pk), what="the failing run")
    assert run.status == RunStatus.FAILED
    assert run.error == "no model directory /no/such/model"  # the trainer's own one-line error
    assert "Traceback" not in run.error


def _trainer_processes(model_dir: Path) -> list[int]:
    """Pids of processes whose command line names the run's output folder (the trainer of that run)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(model_dir) in command:
                pids.append(int(entry.name))
    return pids


def test_a_killed_worker_leaves_the_run_failed_by_the_reaper_and_its_trainer_stopped(
    _empty_broker, start_worker, e2e_settings, tiny_bert_dir, make_project
):
    worker = start_worker("e2e-own")
    project = _judged_project(make_project)
    run = TrainingRun.objects.create(
        project=project,
        config=services.training_config_build(
            {"base_model": str(tiny_bert_dir), "epochs": 2000, **FAST}
        ).to_dict(),
    )
    tasks.training_run_execute.apply_async((run.pk,), queue="e2e-own")
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).history, what="training steps")
    model_dir = files.absolute(TrainingRun.objects.get(pk=run.pk).output_dir)
    assert _trainer_processes(model_dir)
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait()
    # The trainer learns of its parent's death (PR_SET_PDEATHSIG) and stops instead of training for nobody.
    wait_for(lambda: not _trainer_processes(model_dir), timeout=60, what="the orphaned trainer to stop")

    assert services.runs_reap(lost_after=timedelta(seconds=30)) == 0  # not yet: the heartbeat is recent
    time.sleep(2.5)
    assert services.runs_reap(lost_after=timedelta(seconds=2)) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error.startswith("worker lost")
    assert run.finished_at is not None


def test_the_same_task_delivered_twice_trains_once(
    training_worker, e2e_settings, tiny_bert_dir, make_project
):
    project = _judged_project(make_project, n_pairs=16)
    run = services.training_run_create(project=project, config={"base_model": str(tiny_bert_dir), **FAST})
    tasks.training_run_execute.apply_async((run.pk,))  # a redelivery of the same message
    finished = wait_for(lambda: _finished(run.pk), what="the run")
    assert finished.status == RunStatus.SUCCEEDED, finished.error
    training_worker.wait_for_log(f"run {run.pk} is not queued; nothing to do")
    steps = [h["step"] for h in finished.history]
    assert steps == list(range(1, finished.metrics["steps"] + 1))  # one run's steps, once each
    assert DatasetSnapshot.objects.filter(project=project).count() == 1
    assert set(os.listdir(files.absolute(f"runs/{run.pk}"))) == {"config.json", "model", "train.log"}


def test_the_command_queues_a_run_and_follows_it_to_the_end(
    training_worker, e2e_settings, tiny_bert_dir, make_project
):
    from io import StringIO

    from django.core.management import CommandError, call_command

    project = _judged_project(make_project, n_pairs=16)
    out = StringIO()
    call_command(
        "train_reward_model", project.slug, "--base-model", str(tiny_bert_dir), "--max-length", "48",
        "--batch-size", "8", "--wait", stdout=out,
    )  # fmt: skip
    run = TrainingRun.objects.get(project=project)
    assert run.status == RunStatus.SUCCEEDED
    assert out.getvalue().splitlines()[-1].startswith(f"run {run.pk} succeeded: eval_accuracy ")
    with pytest.raises(CommandError, match="failed: no model directory /nope"):
        call_command("train_reward_model", project.slug, "--base-model", "/nope", "--wait", stdout=StringIO())
    with pytest.raises(CommandError, match="--epochs: must be at least 1"):
        call_command("train_reward_model", project.slug, "--epochs", "0", stdout=StringIO())
