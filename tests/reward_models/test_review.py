"""The review queue: ranking by the active model's probability for the human majority (with scores written
directly), what leaves the queue, the API and the admin page, who may see and act, and query counts."""

from __future__ import annotations

import itertools
import random

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Pair, PairReviewAction
from reward_models import selectors
from reward_models.models import ActiveModel, PairScore, PairScoring, RunStatus, TrainingRun
from rm_training.votes import Votes
from web.errors import Invalid

pytestmark = pytest.mark.django_db

REVIEW = "/api/v1/projects/{}/review/"


def _pairs(project, n: int, prefix: str = "p") -> list[Pair]:
    annotation_services.pairs_import(
        project=project,
        items=[
            {"external_id": f"{prefix}{i}", "prompt": f"Q{i}", "response_a": f"A{i}", "response_b": f"B{i}"}
            for i in range(n)
        ],
    )
    return list(Pair.objects.filter(project=project, external_id__startswith=prefix).order_by("id"))


def _votes(project, pair: Pair, choices: list[str], start: int = 0) -> None:
    """Judgments of the pair by raters r{start}, r{start+1}, ... (imported: the fastest real path)."""
    items = [{"pair": pair.external_id, "rater": f"r{start + i}", "choice": c} for i, c in enumerate(choices)]
    annotation_services.judgments_import(project=project, items=items)


def _run(project, *, active: bool = True) -> TrainingRun:
    run = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.SUCCEEDED, finished_at=timezone.now()
    )
    if active:
        ActiveModel.objects.update_or_create(project=project, defaults={"run": run})
    return run


def _score(run: TrainingRun, pair: Pair, probability_a: float) -> None:
    import math

    PairScore.objects.create(
        pair=pair,
        run=run,
        probability_a=probability_a,
        reward_difference=math.log(probability_a / (1 - probability_a)),
        computed_at=timezone.now(),
    )


def _queue_ids(project, run) -> list[int]:
    return list(selectors.review_queue(project=project, run_id=run.pk).values_list("pk", flat=True))


def test_planted_label_flips_are_ranked_at_the_top(make_project):
    """Pairs whose true better side the model mostly sees; 10% of them get their votes flipped. The flipped
    ones are exactly the top of the queue, the rest follow by the model's probability."""
    rng = random.Random(7)
    project = make_project(judgments_per_pair=3)
    pairs = _pairs(project, 60)
    run = _run(project)
    flipped = set(rng.sample([p.pk for p in pairs], 6))
    for pair in pairs:
        truth = rng.choice("ab")
        other = "b" if truth == "a" else "a"
        said = other if pair.pk in flipped else truth
        # 3-0 or 2-1 majorities, a tie vote now and then.
        _votes(project, pair, rng.choice([[said] * 3, [said, said, other], [said, said, "tie"]]))
        confidence = rng.uniform(0.6, 0.99)  # the model sides with the truth
        _score(run, pair, confidence if truth == "a" else 1 - confidence)
    ranked = _queue_ids(project, run)
    assert len(ranked) == 60
    assert set(ranked[:6]) == flipped
    rows = list(selectors.review_queue(project=project, run_id=run.pk))
    probabilities = [row.probability for row in rows]
    assert probabilities == sorted(probabilities)
    assert all(row.probability < 0.5 for row in rows[:6]) and all(row.probability > 0.5 for row in rows[6:])


def test_the_queue_majority_is_the_votes_rule(make_project):
    """Every combination of up to 3 votes of each kind: in the queue exactly when Votes.majority() is a or
    b, with that majority, its margin and the probability of that side."""
    project = make_project(judgments_per_pair=9)
    combos = [c for c in itertools.product(range(4), repeat=3) if sum(c) > 0]
    pairs = _pairs(project, len(combos))
    run = _run(project)
    expected = {}
    for pair, (a, b, tie) in zip(pairs, combos, strict=True):
        _votes(project, pair, ["a"] * a + ["b"] * b + ["tie"] * tie)
        _score(run, pair, 0.3)
        majority = Votes(a=a, b=b, tie=tie).majority()
        if majority in ("a", "b"):
            margin = a - b if majority == "a" else b - a
            expected[pair.pk] = (majority, margin, 0.3 if majority == "a" else 0.7)
    rows = {
        row.pk: (row.majority, row.margin, round(row.probability, 9))
        for row in selectors.review_queue(project=project, run_id=run.pk)
    }
    assert rows == expected


def test_reviewed_waiting_gold_and_other_models_pairs_leave_the_queue(make_project, admin_user):
    project = make_project(judgments_per_pair=2)
    kept, left_out, raised, plain, other_run_only = _pairs(project, 5)
    gold = _pairs(project, 1, prefix="g")[0]
    Pair.objects.filter(pk=gold.pk).update(gold="a")
    run = _run(project)
    other = _run(project, active=False)
    for pair in (kept, left_out, raised, plain, gold):
        _votes(project, pair, ["b", "b"])
        _score(run, pair, 0.9)
    _votes(project, other_run_only, ["b", "b"])
    _score(other, other_run_only, 0.9)
    assert _queue_ids(project, run) == [kept.pk, left_out.pk, raised.pk, plain.pk]

    common = {"project": project, "by": admin_user, "reason": "looked at it"}
    annotation_services.pair_keep(pair_id=kept.pk, **common)
    annotation_services.pair_leave_out(pair_id=left_out.pk, **common)
    annotation_services.pair_quota_raise(pair_id=raised.pk, k=1, **common)
    assert _queue_ids(project, run) == [plain.pk]
    # The vote asked for arrives: the pair is back, with its new majority.
    _votes(project, raised, ["b"], start=10)
    assert _queue_ids(project, run) == [raised.pk, plain.pk]
    assert PairReviewAction.objects.count() == 3  # all recorded, nothing deleted


def test_a_pair_put_back_into_training_does_not_come_back_to_the_queue(make_project, admin_user):
    """docs/API.md: put_back undoes leave_out and "does not come back to the queue": a reviewer looked at
    it and decided it trains, as keep does. It came back, top of the queue, to be reviewed again."""
    project = make_project(judgments_per_pair=2)
    slipped, plain = _pairs(project, 2)
    run = _run(project)
    for pair in (slipped, plain):
        _votes(project, pair, ["b", "b"])
        _score(run, pair, 0.9)
    common = {"project": project, "by": admin_user, "reason": "looked at it"}
    annotation_services.pair_leave_out(pair_id=slipped.pk, **common)
    annotation_services.pair_put_back(pair_id=slipped.pk, **common)
    assert not Pair.objects.get(pk=slipped.pk).left_out
    assert _queue_ids(project, run) == [plain.pk]


def _project_with_queue(make_project, n: int = 5):
    project = make_project(judgments_per_pair=3)
    pairs = _pairs(project, n)
    run = _run(project)
    for i, pair in enumerate(pairs):
        _votes(project, pair, ["a", "a", "b"])
        _score(run, pair, 0.1 + 0.15 * i)
    return project, pairs, run


def test_the_api_pages_the_queue_with_votes_and_pseudonyms(make_project, admin_user, api):
    project, pairs, run = _project_with_queue(make_project)
    staff = api(admin_user)
    first = staff.get(REVIEW.format(project.slug), {"page_size": 2})
    assert first.status_code == 200, first.data
    assert first.data["model"] == run.pk
    row = first.data["results"][0]
    assert row["pair_id"] == pairs[0].pk and row["majority"] == "a" and row["margin"] == 1
    assert row["votes"] == {"a": 2, "b": 1, "tie": 0}
    assert row["probability"] == pytest.approx(0.1)
    assert row["reward_difference"] == pytest.approx(-2.1972245, abs=1e-6)
    assert sorted(j["choice"] for j in row["judgments"]) == ["a", "a", "b"]
    assert all(j["rater"].startswith("r-") for j in row["judgments"])  # pseudonyms, not source ids
    seen = [r["pair_id"] for r in first.data["results"]]
    following = first.data["next"]
    while following:
        page = staff.get(following)
        seen += [r["pair_id"] for r in page.data["results"]]
        following = page.data["next"]
    assert seen == [p.pk for p in pairs]


def test_the_api_without_an_active_model_says_so(make_project, admin_user, api):
    project = make_project()
    answer = api(admin_user).get(REVIEW.format(project.slug))
    assert answer.status_code == 409 and answer.data["code"] == "no_active_model"


def test_actions_through_the_api_are_checked_and_recorded(make_project, admin_user, api):
    project, pairs, _ = _project_with_queue(make_project)
    staff = api(admin_user)
    url = f"{REVIEW.format(project.slug)}{pairs[0].pk}/"
    refusals = [
        {"action": "keep"},  # no reason
        {"action": "keep", "reason": "   "},
        {"action": "keep", "reason": "fine", "k": 2},
        {"action": "more_votes", "reason": "unsure"},
        {"action": "more_votes", "reason": "unsure", "k": 0},
        {"action": "more_votes", "reason": "unsure", "k": "2"},
        {"action": "more_votes", "reason": "unsure", "k": 26},
        {"action": "delete", "reason": "bad"},
        {"action": "keep", "reason": "fine", "pair": 3},
    ]
    for body in refusals:
        answer = staff.post(url, body, format="json")
        assert answer.status_code == 400, (body, answer.data)
    assert not PairReviewAction.objects.exists()
    raised = staff.post(
        url, {"action": "more_votes", "reason": "2-1 against a confident model", "k": 2}, format="json"
    )
    assert raised.status_code == 201, raised.data
    assert (
        raised.data["extra_judgments"] == 2
        and raised.data["by"] == "admin"
        and raised.data["judgment_count"] == 3
    )
    assert Pair.objects.get(pk=pairs[0].pk).extra_judgments == 2
    assert staff.post(url, {"action": "leave_out", "reason": "ambiguous"}, format="json").status_code == 201
    again = staff.post(url, {"action": "leave_out", "reason": "ambiguous"}, format="json")
    assert again.status_code == 409 and again.data["code"] == "already_left_out"
    elsewhere = make_project()
    missing = staff.post(
        f"{REVIEW.format(elsewhere.slug)}{pairs[1].pk}/", {"action": "keep", "reason": "x"}, format="json"
    )
    assert missing.status_code == 404
    assert list(PairReviewAction.objects.values_list("action", flat=True)) == ["more_votes", "leave_out"]
    # A slip is not final: put back, the pair trains again; twice is refused, as leaving out twice is.
    back = staff.post(url, {"action": "put_back", "reason": "wrong pair"}, format="json")
    assert back.status_code == 201 and back.data["action"] == "put_back", back.data
    assert not Pair.objects.get(pk=pairs[0].pk).left_out
    again = staff.post(url, {"action": "put_back", "reason": "wrong pair"}, format="json")
    assert again.status_code == 409 and again.data["code"] == "not_left_out"
    assert staff.post(url, {"action": "put_back", "reason": "x", "k": 1}, format="json").status_code == 400


def test_raters_and_strangers_can_neither_see_nor_act(make_project, make_rater, api, client):
    project, pairs, _ = _project_with_queue(make_project)
    rater = make_rater(project)
    url = REVIEW.format(project.slug)
    action = {"action": "leave_out", "reason": "I do not like it"}
    for user, status in ((rater, 403), (None, 401)):
        caller = api(user)
        assert caller.get(url).status_code == status
        assert caller.post(f"{url}{pairs[0].pk}/", action, format="json").status_code == status
        assert caller.get(f"{url}scoring/").status_code == status
        assert caller.post(f"{url}scoring/").status_code == status
    assert not PairReviewAction.objects.exists() and not Pair.objects.filter(left_out=True).exists()
    assert not PairScoring.objects.exists()
    # The admin page and its forms: a rater is sent to the admin's login, never shown the queue.
    client.force_login(rater)
    page = client.get(reverse("admin:reward_models_review", args=[project.pk]))
    assert page.status_code == 302 and "/admin/login/" in page["Location"]
    posted = client.post(
        reverse("admin:reward_models_review_act", args=[project.pk, pairs[0].pk]),
        {**action, "action": "leave_out"},
    )
    assert posted.status_code == 302 and not Pair.objects.filter(left_out=True).exists()
    # The rater's own pages show nothing of it: no probability, no other rater's pseudonym.
    rate = client.get(f"/projects/{project.slug}/rate/")
    assert rate.status_code == 200
    pseudonyms = list(project.judgments.values_list("rater__pseudonym", flat=True))
    assert not any(p in rate.content.decode() for p in pseudonyms)
    assert b"probability" not in rate.content


def test_staff_without_the_permissions_cannot_score_or_act(make_project, make_user, client):
    project, pairs, _ = _project_with_queue(make_project)
    staff = make_user(staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:reward_models_review", args=[project.pk])).status_code == 403
    assert client.post(reverse("admin:reward_models_review_score", args=[project.pk])).status_code == 403
    act = reverse("admin:reward_models_review_act", args=[project.pk, pairs[0].pk])
    assert client.post(act, {"action": "keep", "reason": "x"}).status_code == 403
    assert not PairReviewAction.objects.exists()


def test_the_admin_page_lists_the_queue_and_its_actions_work(make_project, admin_user, client):
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(pk=admin_user.pk).update(is_superuser=True)
    project, pairs, run = _project_with_queue(make_project)
    client.force_login(admin_user)
    url = reverse("admin:reward_models_review", args=[project.pk])
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert html.index(f'id="review-pair-{pairs[0].pk}"') < html.index(f'id="review-pair-{pairs[1].pk}"')
    assert f"run {run.pk}" in html and 'id="review-score-now"' in html
    # Pairs scored without a scoring of this page (uncertainty selection's priority rounds score open
    # pairs): the page said they "have not been scored" above the list of their scores.
    assert "have not been scored" not in html and "No scoring was started here yet" in html
    act = reverse("admin:reward_models_review_act", args=[project.pk, pairs[0].pk])
    done = client.post(act, {"action": "more_votes", "k": "3", "reason": "model is sure of B"}, follow=True)
    assert done.status_code == 200 and Pair.objects.get(pk=pairs[0].pk).extra_judgments == 3
    refused = client.post(act, {"action": "keep", "reason": ""}, follow=True)
    assert "A reason is required" in refused.content.decode()
    # The form posts any character: a NUL was a 500 from PostgreSQL's text column.
    refused = client.post(act, {"action": "keep", "reason": "fine\x00"}, follow=True)
    assert refused.status_code == 200 and "NUL" in refused.content.decode()
    assert f'id="review-pair-{pairs[0].pk}"' not in client.get(url).content.decode()  # waiting for votes
    # Left out, the pair is listed below the queue with who and why, and put back from there.
    other = reverse("admin:reward_models_review_act", args=[project.pk, pairs[1].pk])
    client.post(other, {"action": "leave_out", "reason": "<b>ambiguous</b>"})
    html = client.get(url).content.decode()
    assert f'id="left-out-{pairs[1].pk}"' in html and f'id="review-pair-{pairs[1].pk}"' not in html
    assert "&lt;b&gt;ambiguous&lt;/b&gt;" in html and "<b>ambiguous</b>" not in html
    client.post(other, {"action": "put_back", "reason": "a slip"})
    assert not Pair.objects.get(pk=pairs[1].pk).left_out
    assert 'id="left-out-pairs"' not in client.get(url).content.decode()
    # Score now records a scoring of the active model (sent to the workers on commit).
    client.post(reverse("admin:reward_models_review_score", args=[project.pk]))
    assert PairScoring.objects.get().run_id == run.pk
    # The project page and the run page link to the queue.
    assert url in client.get(reverse("admin:annotation_project_change", args=[project.pk])).content.decode()
    assert (
        url in client.get(reverse("admin:reward_models_trainingrun_change", args=[run.pk])).content.decode()
    )


def _count_queries(call) -> int:
    with CaptureQueriesContext(connection) as queries:
        call()
    return len(queries)


def test_query_counts_of_the_page_and_the_api_do_not_grow_with_the_judgments(
    make_project, admin_user, api, client
):
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(pk=admin_user.pk).update(is_superuser=True)
    project = make_project(judgments_per_pair=25)
    pairs = _pairs(project, 4)
    run = _run(project)
    for pair in pairs:
        _score(run, pair, 0.2)
    staff = api(admin_user)
    client.force_login(admin_user)
    page_url = reverse("admin:reward_models_review", args=[project.pk])
    counts = []
    for extra in (2, 20):
        for pair in pairs:
            start = Pair.objects.get(pk=pair.pk).judgment_count
            _votes(project, pair, ["a"] * (extra - start), start=start)
        api_answer: list = []
        counts.append(
            (
                _count_queries(lambda: api_answer.append(staff.get(REVIEW.format(project.slug)))),  # noqa: B023
                _count_queries(lambda: client.get(page_url)),
            )
        )
        assert api_answer[0].status_code == 200
        assert sum(len(r["judgments"]) for r in api_answer[0].data["results"]) == 4 * extra
    assert counts[0] == counts[1], counts


def test_the_admin_form_refuses_a_reason_postgresql_cannot_store(make_project, admin_user, client):
    """A NUL in the admin form's reason was a 500 (PostgreSQL refuses it in text); the API's serializer
    refused it, the service did not. The service refuses it now, for every caller, and the admin shows the
    message. The form's k: one that is no number is asked for again instead of called "too many", and
    none is a 500."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(pk=admin_user.pk).update(is_superuser=True)
    project, pairs, _ = _project_with_queue(make_project, n=1)
    client.force_login(admin_user)
    act = reverse("admin:reward_models_review_act", args=[project.pk, pairs[0].pk])
    refused = client.post(act, {"action": "keep", "reason": "a\x00b"}, follow=True)
    assert refused.status_code == 200
    assert "NUL" in refused.content.decode()
    for k in ("", "abc", "\u00b2"):  # "²" is a digit to str.isdigit(), not to int(): it was a 500
        asked = client.post(act, {"action": "more_votes", "k": k, "reason": "why"}, follow=True)
        assert asked.status_code == 200 and "How many more votes?" in asked.content.decode()
    # int() refuses over 4300 digits (it was a 500): out of range, as any k over 25.
    too_many = client.post(act, {"action": "more_votes", "k": "9" * 5000, "reason": "why"}, follow=True)
    assert too_many.status_code == 200 and "Must be from 1 to 25" in too_many.content.decode()
    assert not PairReviewAction.objects.exists()
    with pytest.raises(Invalid):
        annotation_services.pair_keep(project=project, pair_id=pairs[0].pk, by=admin_user, reason="x\x00")


def test_the_page_says_a_lost_scoring_is_lost_and_stops_reloading(make_project, admin_user, client):
    """A worker killed mid-scoring left the row "running": the page reloaded itself every 5 s for ever and
    said "Running" (found by killing a worker). Past STALE_AFTER without progress, it says lost."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model

    from reward_models.models import ScoringStatus
    from reward_models.services.pair_scores import STALE_AFTER

    get_user_model().objects.filter(pk=admin_user.pk).update(is_superuser=True)
    project, _, run = _project_with_queue(make_project, n=1)
    scoring = PairScoring.objects.create(
        project=project, run=run, status=ScoringStatus.RUNNING, total=9, done=3
    )
    client.force_login(admin_user)
    url = reverse("admin:reward_models_review", args=[project.pk])
    fresh = client.get(url).content.decode()
    assert 'http-equiv="refresh"' in fresh and "review-scoring-lost" not in fresh
    PairScoring.objects.filter(pk=scoring.pk).update(
        updated_at=timezone.now() - STALE_AFTER - timedelta(seconds=1)
    )
    lost = client.get(url).content.decode()
    assert 'http-equiv="refresh"' not in lost and 'id="review-scoring-lost"' in lost
