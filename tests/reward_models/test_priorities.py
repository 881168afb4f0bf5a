"""The pairs' priorities under uncertainty selection (reward_models.services.priorities): a round scores
the open regular pairs without a priority with the active model (a real tiny one) and writes
1 - |2 P(a) - 1| on them; only new pairs each round; a new model replaces the priorities in one go; no
active model clears them; a message delivered twice does nothing the second time."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import replace

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Pair, Project, Selection
from config.celery import app
from reward_models import files, services, tasks
from reward_models.models import ActiveModel, PairScore, PriorityRound, PriorityStatus, RunStatus, TrainingRun
from reward_models.services.priorities import STALE_AFTER, priorities_run_id, priority
from rm_training.config import TrainingConfig
from rm_training.train import train
from tests.annotation.test_engine import in_parallel
from tests.reward_models.test_pair_scores import marker_project
from tests.rm_training.conftest import marker_comparisons

pytestmark = pytest.mark.django_db


def uncertain_project(make_project) -> Project:
    """12 pairs, one judgment each: m0 to m3 judged (closed), m4 to m11 open; and a gold pair."""
    project = marker_project(make_project, n=12, judged=4)
    annotation_services.pairs_import(
        project=project,
        items=[{"external_id": "g0", "prompt": "Q", "response_a": "x", "response_b": "y", "gold": "a"}],
    )
    Project.objects.filter(pk=project.pk).update(selection=Selection.UNCERTAINTY)
    project.refresh_from_db()
    return project


def trained(project, base_dir, *, seed: int = 0) -> TrainingRun:
    run = TrainingRun.objects.create(project=project, config={})
    run.output_dir = f"runs/{run.pk}/model"
    config = TrainingConfig(
        base_model=str(base_dir), max_length=48, batch_size=8, learning_rate=3e-3, device="cpu", seed=seed
    )
    directory = files.absolute(run.output_dir)
    metrics = train(replace(config, bf16=False), examples=marker_comparisons(24), output_dir=directory)
    run.status, run.finished_at, run.metrics = RunStatus.SUCCEEDED, timezone.now(), metrics
    run.save()
    return run


def priorities(project) -> dict[str, float | None]:
    return dict(Pair.objects.filter(project=project).values_list("external_id", "priority"))


def expected(project, run) -> dict[str, float | None]:
    """The run's priorities on the open regular pairs, None elsewhere."""
    scores = dict(PairScore.objects.filter(run=run).values_list("pair__external_id", "probability_a"))
    shown = {}
    for external_id in priorities(project):
        is_open = (external_id.startswith("m") and int(external_id[1:]) >= 4) or external_id.startswith("n")
        shown[external_id] = priority(scores[external_id]) if is_open else None
    return shown


def round_of(project) -> PriorityRound:
    job = services.priorities_refresh(project=project)
    assert job is not None
    return job


def test_priority_is_the_closeness_of_p_a_to_one_half():
    assert priority(0.5) == 1.0 and priority(0.0) == 0.0 and priority(1.0) == 0.0
    assert priority(0.75) == pytest.approx(0.5) and priority(0.25) == pytest.approx(0.5)


def test_a_round_writes_the_open_regular_pairs_only_and_runs_once(
    make_project, tiny_bert_dir, django_capture_on_commit_callbacks
):
    project = uncertain_project(make_project)
    assert services.priorities_refresh(project=project) is None  # no active model: nothing to do
    run = trained(project, tiny_bert_dir)
    ActiveModel.objects.create(project=project, run=run)
    with django_capture_on_commit_callbacks() as sent:
        job = round_of(project)
        assert round_of(project).pk == job.pk  # one at a time
    assert len(sent) == 1  # sent on commit, once
    assert job.status == PriorityStatus.QUEUED and job.run_id == run.pk
    assert services.priority_round_execute(job.pk) == PriorityStatus.SUCCEEDED
    assert tasks.priority_round_execute(job.pk) == "skipped"  # delivered twice: nothing twice
    job.refresh_from_db()
    assert (job.total, job.done, job.written, job.replaced) == (8, 8, 8, True)
    # Scored: the open regular pairs only (not the closed ones, not the gold pair).
    assert set(PairScore.objects.filter(run=run).values_list("pair__external_id", flat=True)) == {
        f"m{i}" for i in range(4, 12)
    }
    assert priorities(project) == pytest.approx(expected(project, run))
    project.refresh_from_db()
    assert project.priorities_at == job.finished_at and priorities_run_id(project) == run.pk
    assert services.priorities_refresh(project=project) is None  # nothing new: no round


def test_each_round_scores_and_writes_only_the_pairs_without_a_priority(make_project, tiny_bert_dir):
    project = uncertain_project(make_project)
    run = trained(project, tiny_bert_dir)
    ActiveModel.objects.create(project=project, run=run)
    services.priority_round_execute(round_of(project).pk)
    first = dict(PairScore.objects.filter(run=run).values_list("pair_id", "computed_at"))
    written_at = dict(Pair.objects.filter(priority__isnull=False).values_list("id", "priority"))
    annotation_services.pairs_import(
        project=project,
        items=[
            {"external_id": f"n{i}", "prompt": f"new {i}", "response_a": f"a {i}", "response_b": f"b {i}"}
            for i in range(3)
        ],
    )
    # One of the new pairs was scored by the run already (the review queue's scoring, say): not again.
    services.pair_scores_compute(run=run, pairs=Pair.objects.filter(external_id="n0"))
    job = round_of(project)
    assert services.priority_round_execute(job.pk) == PriorityStatus.SUCCEEDED
    job.refresh_from_db()
    assert (job.total, job.written, job.replaced) == (2, 3, False)
    later = dict(PairScore.objects.filter(run=run, pair_id__in=first).values_list("pair_id", "computed_at"))
    assert later == first
    assert priorities(project) == pytest.approx(expected(project, run))
    kept = dict(Pair.objects.filter(pk__in=written_at).values_list("id", "priority"))
    assert kept == written_at


@pytest.mark.parametrize("batch", [3, 5000])
def test_a_new_active_model_replaces_every_priority(make_project, tiny_bert_dir, monkeypatch, batch):
    """Written batch by batch (3 pairs: three batches of the eight open pairs, so that no claim waits for
    them all), stamped once all are written."""
    import annotation.services.priorities as annotation_priorities

    monkeypatch.setattr(annotation_priorities, "BATCH_PAIRS", batch)
    monkeypatch.setattr(annotation_services, "PRIORITY_BATCH_PAIRS", batch)
    project = uncertain_project(make_project)
    old = trained(project, tiny_bert_dir, seed=1)
    services.training_run_activate(run=old, force_reason="tiny test model")
    first = PriorityRound.objects.get(project=project)  # the activation started it
    services.priority_round_execute(first.pk)
    old_priorities = priorities(project)
    assert old_priorities == pytest.approx(expected(project, old))
    late = PriorityRound.objects.create(project=project, run=old)  # a round of the old model still queued

    new = trained(project, tiny_bert_dir, seed=2)
    services.training_run_activate(run=new, force_reason="tiny test model")
    job = PriorityRound.objects.get(project=project, run=new)
    # Until the new model's round writes, the pairs keep the old model's priorities, all of them.
    assert priorities(project) == old_priorities
    project.refresh_from_db()
    assert priorities_run_id(project) == old.pk
    assert services.priority_round_execute(job.pk) == PriorityStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.replaced and job.written == 8 and job.total == 8
    assert priorities(project) == pytest.approx(expected(project, new))
    assert priorities(project) != pytest.approx(old_priorities)  # another model
    project.refresh_from_db()
    assert priorities_run_id(project) == new.pk and project.priorities_at == job.finished_at
    # The old model's late round writes nothing.
    assert services.priority_round_execute(late.pk) == PriorityStatus.SUPERSEDED
    assert priorities(project) == pytest.approx(expected(project, new))


def test_without_an_active_model_or_uncertainty_the_priorities_are_void(make_project, tiny_bert_dir):
    project = uncertain_project(make_project)
    run = trained(project, tiny_bert_dir)
    ActiveModel.objects.create(project=project, run=run)
    services.priority_round_execute(round_of(project).pk)
    queued = PriorityRound.objects.create(project=project, run=run)
    written = priorities(project)
    ActiveModel.objects.filter(project=project).delete()
    assert services.priorities_refresh_all() == []
    # The stamp is off: the engine reads no priority (the values wait for the next round that writes).
    project.refresh_from_db()
    assert project.priorities_at is None and priorities_run_id(project) is None
    assert project.selection_in_effect == Selection.RANDOM
    assert services.priority_round_execute(queued.pk) == PriorityStatus.SUPERSEDED
    assert priorities(project) == written
    # Back: the model's scores are kept, so the next round writes every open pair again without scoring.
    ActiveModel.objects.create(project=project, run=run)
    [job] = services.priorities_refresh_all()
    services.priority_round_execute(job.pk)
    job.refresh_from_db()
    assert (job.total, job.written, job.replaced) == (0, 8, True)
    # Another selection: the stamp off too; the command takes the values off as well.
    Project.objects.filter(pk=project.pk).update(selection=Selection.RANDOM)
    assert services.priorities_refresh_all() == []
    project.refresh_from_db()
    assert project.priorities_at is None
    annotation_services.pair_priorities_clear(project=project)
    assert set(priorities(project).values()) == {None}


def test_a_round_whose_model_does_not_load_fails_and_writes_nothing(make_project):
    project = uncertain_project(make_project)
    run = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.SUCCEEDED, finished_at=timezone.now()
    )
    ActiveModel.objects.create(project=project, run=run)
    job = round_of(project)
    assert services.priority_round_execute(job.pk) == PriorityStatus.FAILED
    job.refresh_from_db()
    assert job.error and set(priorities(project).values()) == {None}


def test_a_lost_round_is_replaced_by_the_next_refresh_and_one_waiting_for_a_worker_is_not(
    make_project, broker_at, own_redis
):
    broker_at(own_redis.url)
    project = uncertain_project(make_project)
    run = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.SUCCEEDED, finished_at=timezone.now()
    )
    ActiveModel.objects.create(project=project, run=run)
    old = timezone.now() - 2 * STALE_AFTER
    # Queued for long behind a training run, its message (or another) on the training queue: not lost.
    waiting = round_of(project)
    PriorityRound.objects.filter(pk=waiting.pk).update(updated_at=old)
    tasks.training_run_execute.apply_async((0,))
    assert own_redis.waiting("training") == 1
    assert round_of(project).pk == waiting.pk
    # The queue empty: its message is gone; lost, and another round takes its place.
    own_redis.client().delete("training")
    fresh = round_of(project)
    waiting.refresh_from_db()
    assert fresh.pk != waiting.pk and waiting.status == PriorityStatus.FAILED
    assert waiting.error.startswith("lost")
    # Running with its row still for long: its worker stopped, whatever the queue holds.
    PriorityRound.objects.filter(pk=fresh.pk).update(status=PriorityStatus.RUNNING, updated_at=old)
    tasks.training_run_execute.apply_async((0,))
    third = round_of(project)
    fresh.refresh_from_db()
    assert third.pk != fresh.pk and fresh.status == PriorityStatus.FAILED


def test_rounds_go_to_the_training_queue_and_beat_refreshes_every_five_minutes():
    assert app.amqp.router.route({}, tasks.priority_round_execute.name)["queue"].name == "training"
    assert app.amqp.router.route({}, tasks.priorities_refresh.name)["queue"].name == "celery"
    entry = settings.CELERY_BEAT_SCHEDULE["refresh-priorities"]
    assert entry == {"task": tasks.priorities_refresh.name, "schedule": 300.0}


def test_the_command_brings_the_priorities_up_to_date_here_and_clears_them(make_project, tiny_bert_dir):
    project = uncertain_project(make_project)
    out = io.StringIO()
    call_command("score_priorities", project.slug, stdout=out)
    assert "no active model; pairs are served in the default order" in out.getvalue()
    run = trained(project, tiny_bert_dir)
    ActiveModel.objects.create(project=project, run=run)
    with pytest.raises(CommandError, match="No project"):
        call_command("score_priorities", "nope")
    out = io.StringIO()
    call_command("score_priorities", project.slug, stdout=out)
    assert f"run {run.pk} scored 8 pairs and wrote 8 priorities (replacing" in out.getvalue()
    assert priorities(project) == pytest.approx(expected(project, run))
    out = io.StringIO()
    call_command("score_priorities", project.slug, stdout=out)
    assert f"up to date: every open pair carries run {run.pk}'s priority" in out.getvalue()
    out = io.StringIO()
    call_command("score_priorities", project.slug, "--clear", stdout=out)
    assert "8 priorities cleared" in out.getvalue() and set(priorities(project).values()) == {None}


# Committed: each thread has its own connection. The rounds' messages go to a Redis of the test's own.
@pytest.mark.django_db(transaction=True)
def test_refreshes_at_once_start_one_round_and_deliveries_at_once_run_it_once(
    make_project, broker_at, own_redis
):
    broker_at(own_redis.url)
    project = uncertain_project(make_project)
    run = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.SUCCEEDED, finished_at=timezone.now()
    )
    ActiveModel.objects.create(project=project, run=run)
    started = in_parallel(lambda: services.priorities_refresh(project=project), [()] * 8)
    assert all(isinstance(job, PriorityRound) for job in started), started
    assert {job.pk for job in started} == set(PriorityRound.objects.values_list("pk", flat=True))
    assert PriorityRound.objects.count() == 1
    [job] = PriorityRound.objects.all()
    # Delivered four times at once: one worker claims it (the model does not load: it fails), the others
    # find it claimed.
    ended = in_parallel(services.priority_round_execute, [(job.pk,)] * 4)
    assert sorted(ended) == [PriorityStatus.FAILED] + ["skipped"] * 3


def test_the_rounds_are_listed_read_only_in_the_admin(make_project, make_user, client):
    project = make_project()
    run = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.SUCCEEDED, finished_at=timezone.now()
    )
    job = PriorityRound.objects.create(
        project=project, run=run, status=PriorityStatus.FAILED, error="<script>alert(1)</script>"
    )
    viewer = make_user(staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_priorityround"))
    client.force_login(viewer)
    listing = client.get(reverse("admin:reward_models_priorityround_changelist"))
    assert listing.status_code == 200 and f">{job.pk}</a>" in listing.content.decode()
    page = client.get(reverse("admin:reward_models_priorityround_change", args=[job.pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert 'name="_save"' not in page  # read-only


@pytest.mark.django_db(transaction=True)
def test_a_round_writing_priorities_never_deadlocks_a_judgment_that_holds_one_of_its_pairs(
    make_project, make_pairs, make_rater
):
    """A judgment locks its pair first, then inserts rows whose foreign keys take KEY SHARE on the
    project's row. A round's write that held the project's row FOR UPDATE (which refuses KEY SHARE) and
    then waited for that pair closed a cycle, which PostgreSQL broke by failing one side: the round, or
    (when the judgment waited first, as it does behind a long write) the rater's judgment."""
    project = make_project(judgments_per_pair=1)
    make_pairs(project, 4)
    Project.objects.filter(pk=project.pk).update(selection=Selection.UNCERTAINTY)
    now = timezone.now()
    run = TrainingRun.objects.create(project=project, config={}, status=RunStatus.SUCCEEDED, finished_at=now)
    ActiveModel.objects.create(project=project, run=run)
    # Scored already: the round loads no model, it only writes.
    PairScore.objects.bulk_create(
        PairScore(pair=pair, run=run, reward_difference=0.0, probability_a=0.5, computed_at=now)
        for pair in Pair.objects.filter(project=project)
    )
    user = make_rater(project)
    held = annotation_services.assignment_next(project=project, user=user).assignment
    job = services.priorities_refresh(project=project, send=False)
    assert job is not None
    pair_locked, round_waits = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def judge() -> None:
        try:
            with transaction.atomic():
                # The judgment's first statement locks its pair (with the rater and the assignment).
                Pair.objects.select_for_update().get(pk=held.pair_id)
                pair_locked.set()
                assert round_waits.wait(30)
                annotation_services.judgment_record(assignment_id=held.pk, user=user, choice="left")
            outcomes["judgment"] = "recorded"
        except Exception as error:
            outcomes["judgment"] = error
        finally:
            connection.close()

    def write() -> None:
        try:
            assert pair_locked.wait(30)
            outcomes["round"] = services.priority_round_execute(job.pk)
        except Exception as error:
            outcomes["round"] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=judge), threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    assert pair_locked.wait(30)
    # The round waits for the judgment's pair; then the judgment goes on.
    for _ in range(600):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
        time.sleep(0.01)
    round_waits.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    job.refresh_from_db()
    assert outcomes == {"judgment": "recorded", "round": PriorityStatus.SUCCEEDED}, (outcomes, job.error)
    assert set(Pair.objects.filter(project=project).values_list("priority", flat=True)) <= {1.0, None}


def test_the_command_says_in_one_line_why_a_round_failed(make_project, caplog):
    """A model that does not load (its directory gone) is a failed round with its reason, not a fault:
    the command's error is one or two lines (README, Commands), not the traceback the round logged."""
    project = uncertain_project(make_project)
    run = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.SUCCEEDED, finished_at=timezone.now()
    )
    ActiveModel.objects.create(project=project, run=run)
    with pytest.raises(CommandError, match=f"failed: Run {run.pk}'s model is not available"):
        call_command("score_priorities", project.slug, stdout=io.StringIO())
    failed = [r for r in caplog.records if "priority round" in r.getMessage()]
    assert failed and not any(r.exc_info for r in failed)
    assert "model is not available" in failed[0].getMessage()
