"""The agreement dashboard under uncertainty selection: the arms side by side (judgments and agreement per
arm from planted assignments, the active model's held-out accuracy per arm from its run's metrics) and the
plain lines that say in which order pairs are served and where the priorities come from."""

from __future__ import annotations

import re
from datetime import UTC

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation import services
from annotation.models import Assignment, Pair, Project, Selection
from annotation.pages import dashboard

pytestmark = pytest.mark.django_db

UNCERTAIN = [f"p{i}" for i in range(4)]  # both raters answer a: they agree
RANDOM = [f"p{i}" for i in range(4, 8)]  # one answers a, the other b: they disagree
# p8 to p11: served in the default order (no arm), both answer b


def url(project):
    return reverse("admin:annotation_project_agreement", args=[project.pk])


def planted(make_project, make_pairs, make_rater) -> Project:
    """12 pairs judged by two raters through the engine; then the arms written on their assignments as the
    claim writes them under uncertainty selection."""
    project = make_project(judgments_per_pair=2)
    make_pairs(project, 12)
    for k, user in enumerate([make_rater(project), make_rater(project)]):
        while (served := services.assignment_next(project=project, user=user)) is not None:
            assignment = served.assignment
            external_id = assignment.pair.external_id
            side = "a" if external_id in UNCERTAIN or (external_id in RANDOM and k == 0) else "b"
            choice = "left" if assignment.shown_left == side else "right"
            services.judgment_record(assignment_id=assignment.pk, user=user, choice=choice)
    Assignment.objects.filter(pair__external_id__in=UNCERTAIN).update(arm="uncertainty", propensity=0.1)
    Assignment.objects.filter(pair__external_id__in=RANDOM).update(arm="random", propensity=0.05)
    Project.objects.filter(pk=project.pk).update(selection=Selection.UNCERTAINTY, selection_epsilon=0.25)
    project.refresh_from_db()
    return project


def arm_rows(page: str) -> dict[str, list[str]]:
    section = page[page.index('id="arms-title"') : page.index('id="raters-title"')]
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>(.*?)</tr>', section, flags=re.S)
    return {arm: re.findall(r'<td class="num">([^<]*)</td>', cells) for arm, cells in rows}


def test_the_arms_show_their_judgments_agreement_and_the_default_order_line(
    superuser_client, make_project, make_pairs, make_rater
):
    project = planted(make_project, make_pairs, make_rater)
    page = superuser_client.get(url(project)).content.decode()
    assert (
        "Uncertainty selection is chosen, but the project has no active reward model: pairs are served in "
        "the default order until a model is activated and has scored the open pairs." in page
    )
    assert "25% of the pairs are drawn at random" in page
    # judgments, pairs with 2+, percent agreement, decisive agreement, alpha, the model's accuracy
    assert arm_rows(page) == {
        "Uncertainty": ["8", "4", "100.0%", "100.0%", "—", "not measured"],
        "Random share": ["8", "4", "0.0%", "0.0%", "-0.750", "not measured"],
        "Default order (no arm)": ["8", "4", "100.0%", "100.0%", "—", "not measured"],
    }
    assert (
        "inverse propensity (corrected for how the pairs were chosen): <strong>not measured</strong>" in page
    )


def test_the_active_models_accuracy_per_arm_and_where_the_priorities_come_from(
    superuser_client, make_project, make_pairs, make_rater
):
    from reward_models.models import ActiveModel, PriorityRound, PriorityStatus, RunStatus, TrainingRun

    project = planted(make_project, make_pairs, make_rater)
    run = TrainingRun.objects.create(
        project=project,
        config={},
        status=RunStatus.SUCCEEDED,
        finished_at=timezone.now(),
        metrics={
            "eval_accuracy": 0.7,
            "eval_by_arm": {
                "uncertainty": {"pairs": 40, "accuracy": 0.625},
                "random": {"pairs": 10, "accuracy": 0.9},
                "default": {"pairs": 3, "accuracy": "<b>high</b>"},  # not a figure: not measured
            },
            # As rm_training.evaluate writes it.
            "eval_accuracy_ipw": {
                "accuracy": 0.75,
                "standard_error": 0.0432,
                "pairs": 50,
                "effective_pairs": 6.25,
            },
        },
    )
    ActiveModel.objects.create(project=project, run=run)
    PriorityRound.objects.create(
        project=project, run=run, status=PriorityStatus.RUNNING, done=256, total=1000
    )
    page = superuser_client.get(url(project)).content.decode()
    assert (
        f"the active model (run {run.pk}) has not scored the pairs yet: pairs are served in the default "
        "order until its priorities are written." in page
    )
    assert "Scoring now (running): 256 of 1,000 pairs scored." in page
    rows = arm_rows(page)
    assert rows["Uncertainty"][-1] == "62.5% on 40 pairs"
    assert rows["Random share"][-1] == "90.0% on 10 pairs"
    assert rows["Default order (no arm)"][-1] == "not measured"
    assert "<strong>75.0% (standard error 4.3 points; worth 6.2 of its 50 pairs)</strong>" in page
    assert "<b>high" not in page

    # The round ends: the line says when and by which run; a failed round says why, escaped.
    services.pair_priorities_set(
        project=project,
        priorities=dict.fromkeys(Pair.objects.values_list("id", flat=True), 0.5),
        now=timezone.now(),
    )
    PriorityRound.objects.update(status=PriorityStatus.SUCCEEDED, finished_at=timezone.now())
    project.refresh_from_db()
    written = f"{project.priorities_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    PriorityRound.objects.create(
        project=project, run=run, status=PriorityStatus.FAILED, error="<script>alert(1)</script>"
    )
    page = superuser_client.get(url(project)).content.decode()
    assert f"Priorities last written {written}, by run {run.pk}." in page
    assert "served in the default order until" not in page
    assert "The last scoring of the pairs failed: &lt;script&gt;alert(1)&lt;/script&gt;." in page
    assert "<script>alert(1)" not in page
    # A reason that ends its sentence (as the services' do) is not given a second full stop.
    PriorityRound.objects.create(
        project=project, run=run, status=PriorityStatus.FAILED, error="Run 7's model is not available."
    )
    page = superuser_client.get(url(project)).content.decode()
    assert "failed: Run 7&#x27;s model is not available." in page and "available.." not in page


def test_other_selections_show_no_arms(superuser_client, make_project, make_pairs, make_rater):
    project = planted(make_project, make_pairs, make_rater)
    Project.objects.filter(pk=project.pk).update(selection=Selection.RANDOM)
    assert 'id="arms-title"' not in superuser_client.get(url(project)).content.decode()


def test_the_arms_section_renders_in_a_fixed_number_of_queries(
    superuser_client, make_project, make_pairs, make_rater, django_assert_num_queries
):
    project = planted(make_project, make_pairs, make_rater)
    # 1 session, 2 user, 3 project, 4 the cache key, 5 judgments (COPY), 6 pairs (COPY), 7 rater names,
    # 8 the active model, 9 the latest succeeded run; the arms: 10 the cache key, 11 pairs (COPY),
    # 12-14 each arm's judgments (COPY), 15 the active model with its run, 16 the latest priority round,
    # 17 the run of the latest succeeded round (only while priorities are written: none here)
    with django_assert_num_queries(16):
        assert superuser_client.get(url(project)).status_code == 200
    # cached: both reports from Redis until a judgment arrives (1-3 as above, 4 and 7 the cache keys, 5 and 6
    # the reward model's summary, 8 and 9 the arms' summary)
    with django_assert_num_queries(9):
        assert superuser_client.get(url(project)).status_code == 200


def test_without_a_registered_summary_the_arms_say_no_model(
    superuser_client, make_project, make_pairs, make_rater, monkeypatch
):
    project = planted(make_project, make_pairs, make_rater)
    monkeypatch.setattr(dashboard, "_selection_summary", None)
    page = superuser_client.get(url(project)).content.decode()
    assert "no active reward model: pairs are served in the default order" in page
