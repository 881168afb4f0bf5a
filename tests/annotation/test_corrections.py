"""Taking back a slip: engine.judgment_correct, the my-judgments and correction endpoints, and what every
reader of judgments sees after a correction (exports, agreement and its cache, the engine's quota)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation import selectors, services
from annotation.models import (
    AssignmentStatus,
    Judgment,
    JudgmentRevision,
    Membership,
    Pair,
    Project,
)
from annotation.selectors import ExportFilter, project_agreement
from web.errors import Conflict, Forbidden, Invalid, NotFound

from .test_engine import in_parallel

MY = "/api/v1/projects/{}/my-judgments/"
CORRECT = "/api/v1/judgments/{}/correction/"


def _judged(project, user, choice="left", **fields):
    """The user's next pair in the project, judged; returns the judgment."""
    served = services.assignment_next(project=project, user=user)
    assert served is not None
    return services.judgment_record(assignment_id=served.assignment.pk, user=user, choice=choice, **fields)


def _body(response):
    return b"".join(response.streaming_content)


@pytest.fixture
def project(make_project, make_pairs):
    project = make_project("fix", judgments_per_pair=2, strength_levels=3, correction_seconds=120)
    make_pairs(project, 4)
    return project


# The service


def test_a_correction_replaces_the_answer_and_keeps_each_earlier_one(project, make_rater):
    user = make_rater(project)
    judgment = _judged(project, user, "left", strength=1, rationale="first")
    first_at, second_at = (
        judgment.created_at + timedelta(seconds=10),
        judgment.created_at + timedelta(seconds=20),
    )
    services.judgment_correct(
        judgment_id=judgment.pk, user=user, choice="right", strength=3, rationale="oops", now=first_at
    )
    services.judgment_correct(judgment_id=judgment.pk, user=user, choice="tie", rationale="", now=second_at)

    judgment.refresh_from_db()
    assert (judgment.choice, judgment.strength, judgment.rationale) == ("tie", None, "")
    assert judgment.created_at < first_at  # the first answer's time: the window runs from it
    left, right = judgment.shown_left, "b" if judgment.shown_left == "a" else "a"
    revisions = list(judgment.revisions.values_list("choice", "strength", "rationale", "shown_left"))
    assert revisions == [(left, 1, "first", left), (right, 3, "oops", left)]
    times = list(judgment.revisions.values_list("answered_at", "replaced_at"))
    assert times == [(judgment.created_at, first_at), (first_at, second_at)]
    assert set(judgment.revisions.values_list("rater_id", "project_id")) == {(judgment.rater_id, project.pk)}


def test_a_correction_keeps_the_place_and_the_count(project, make_rater, make_pairs):
    user = make_rater(project)
    judgment = _judged(project, user, strength=1)
    services.judgment_correct(judgment_id=judgment.pk, user=user, choice="right", strength=2)
    pair = Pair.objects.get(pk=judgment.pair_id)
    assert pair.judgment_count == 1
    assert judgment.assignment.status == AssignmentStatus.JUDGED
    assert Judgment.objects.filter(pair=pair, rater=judgment.rater).count() == 1


def test_the_same_answer_again_writes_no_revision(project, make_rater):
    user = make_rater(project)
    judgment = _judged(project, user, strength=2)
    for _ in range(2):
        services.judgment_correct(judgment_id=judgment.pk, user=user, choice="right", strength=2)
    assert judgment.revisions.count() == 1


def test_the_window_runs_from_the_first_answer_and_then_closes(project, make_rater):
    user = make_rater(project)
    judgment = _judged(project, user, strength=1)
    end = judgment.created_at + timedelta(seconds=120)
    services.judgment_correct(judgment_id=judgment.pk, user=user, choice="right", strength=1, now=end)
    with pytest.raises(Conflict) as refused:
        services.judgment_correct(
            judgment_id=judgment.pk, user=user, choice="left", strength=1, now=end + timedelta(milliseconds=1)
        )
    assert refused.value.code == "correction_window_closed"
    judgment.refresh_from_db()
    assert judgment.revisions.count() == 1 and judgment.choice != judgment.revisions.get().choice


def test_a_project_with_corrections_off_refuses_them(make_project, make_pairs, make_rater):
    project = make_project(correction_seconds=0)
    make_pairs(project, 1)
    user = make_rater(project)
    judgment = _judged(project, user)
    with pytest.raises(Conflict) as refused:
        services.judgment_correct(judgment_id=judgment.pk, user=user, choice="right")
    assert refused.value.code == "corrections_off"
    assert services.correctable_until(judgment=judgment, project=project) is None


def test_only_the_judgments_own_rater_may_correct_it(project, make_rater, make_user):
    owner, other = make_rater(project), make_rater(project)
    judgment = _judged(project, owner, strength=1)
    for user in (other, make_user("boss", staff=True), make_user("stranger")):
        with pytest.raises(NotFound):
            services.judgment_correct(judgment_id=judgment.pk, user=user, choice="right", strength=1)
    judgment.refresh_from_db()
    assert judgment.choice == judgment.shown_left and not judgment.revisions.exists()


def test_a_rater_removed_from_the_project_may_no_longer_correct(project, make_rater):
    user = make_rater(project)
    judgment = _judged(project, user, strength=1)
    Membership.objects.filter(user=user).delete()
    with pytest.raises(Forbidden):
        services.judgment_correct(judgment_id=judgment.pk, user=user, choice="right", strength=1)


def test_imported_judgments_are_not_correctable(project, make_rater):
    from django.contrib.auth.models import AnonymousUser

    services.judgments_import(project=project, items=[{"pair": "p0", "rater": "ext-1", "choice": "a"}])
    imported = Judgment.objects.get(rater__source_id="ext-1")
    # Its rater is no user: nobody finds it, an anonymous caller (no user id) least of all.
    for user in (AnonymousUser(), make_rater(project)):
        with pytest.raises(NotFound):
            services.judgment_correct(judgment_id=imported.pk, user=user, choice="left")
    # A judgment of a user of this site without an assignment (none is made so today) is refused too.
    user = make_rater(project)
    rater = services.rater_get_or_create(user=user)
    loose = Judgment.objects.create(
        project=project,
        pair=Pair.objects.get(external_id="p1"),
        rater=rater,
        choice="a",
        created_at=timezone.now(),
        pair_longer=-1,
    )
    with pytest.raises(Conflict) as refused:
        services.judgment_correct(judgment_id=loose.pk, user=user, choice="left")
    assert refused.value.code == "not_correctable"


def test_a_correction_follows_the_projects_rules(make_project, make_pairs, make_rater):
    project = make_project(allow_tie=False, strength_levels=2, rationale="required")
    make_pairs(project, 1)
    user = make_rater(project)
    judgment = _judged(project, user, strength=1, rationale="because")
    for fields in (
        {"choice": "tie", "rationale": "x"},
        {"choice": "right", "strength": 3, "rationale": "x"},
        {"choice": "right", "strength": 1, "rationale": "  "},
        {"choice": "right", "rationale": "x"},
    ):
        with pytest.raises(Invalid):
            services.judgment_correct(judgment_id=judgment.pk, user=user, **fields)
    assert not judgment.revisions.exists()


def test_the_database_keeps_revisions_valid(project, make_rater):
    judgment = _judged(project, make_rater(project), strength=1)
    now = timezone.now()
    base = {"judgment": judgment, "project": project, "rater_id": judgment.rater_id, "shown_left": "a"}
    for bad in (
        {"choice": "x", "answered_at": now, "replaced_at": now},
        {"choice": "tie", "strength": 2, "answered_at": now, "replaced_at": now},
        {"choice": "a", "answered_at": now, "replaced_at": now - timedelta(seconds=1)},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            JudgmentRevision.objects.create(**base, **bad)


def test_project_settings_bound_the_correction_window(make_project):
    from annotation.services import project_update

    project = make_project()
    for bad in (-1, 24 * 3600 + 1):
        with pytest.raises(Invalid):
            project_update(project=project, changes={"correction_seconds": bad})
    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.filter(pk=project.pk).update(correction_seconds=24 * 3600 + 1)
    assert project_update(project=project, changes={"correction_seconds": 0}).correction_seconds == 0


# What readers of judgments see


def test_exports_give_the_latest_answer(project, make_rater, api, admin_user):
    """Two raters both prefer response A of p0; one corrects to B. Every export shows the corrected
    answer, one row per rater and pair, and the preference the two made together is gone."""
    users = [make_rater(project) for _ in range(2)]
    judgments = []
    for user in users:  # both on p0 (nearest completion first)
        served = services.assignment_next(project=project, user=user)
        a_side = "left" if served.assignment.shown_left == "a" else "right"
        judgments.append(
            services.judgment_record(assignment_id=served.assignment.pk, user=user, choice=a_side, strength=1)
        )
    assert judgments[0].pair_id == judgments[1].pair_id and {j.choice for j in judgments} == {"a"}
    staff = api(admin_user)
    preferences = "/api/v1/projects/fix/export/preferences.jsonl"
    assert json.loads(_body(staff.get(preferences)))["votes"] == {"a": 2, "b": 0, "tie": 0}
    b_side = "right" if judgments[0].shown_left == "a" else "left"
    corrected = services.judgment_correct(
        judgment_id=judgments[0].pk, user=users[0], choice=b_side, strength=3
    )
    assert corrected.choice == "b"

    lines = _body(staff.get("/api/v1/projects/fix/export/judgments.jsonl")).splitlines()
    rows = [json.loads(line) for line in lines]
    assert sorted((r["judgment_id"], r["choice"], r["strength"]) for r in rows) == [
        (judgments[0].pk, "b", 3),
        (judgments[1].pk, "a", 1),
    ]
    listed = staff.get("/api/v1/projects/fix/judgments/").json()["results"]
    assert sorted((r["judgment_id"], r["choice"]) for r in listed) == [
        (judgments[0].pk, "b"),
        (judgments[1].pk, "a"),
    ]
    csv_text = _body(staff.get("/api/v1/projects/fix/export/judgments.csv")).decode()
    assert len(csv_text.strip().splitlines()) == 3  # the header and one row per judgment
    # One vote each way: no majority, so the pair makes no preference any more.
    assert _body(staff.get(preferences)) == b""


def test_agreement_changes_after_a_correction_and_the_cache_is_not_stale(
    project, make_rater, api, admin_user
):
    users = [make_rater(project) for _ in range(2)]
    judgments = [_judged(project, user, "left", strength=1) for user in users]
    before = project_agreement(project).as_dict()
    assert project_agreement(project).as_dict() == before  # from the cache
    assert before["left_rate"] == 1.0
    services.judgment_correct(judgment_id=judgments[0].pk, user=users[0], choice="right", strength=1)
    after = project_agreement(project).as_dict()
    assert after["left_rate"] == 0.5
    assert after["judgments_total"] == before["judgments_total"] == 2
    assert api(admin_user).get("/api/v1/projects/fix/agreement/").json()["left_rate"] == 0.5
    # A windowed report (a snapshot's) is recomputed too.
    window = ExportFilter(since=judgments[0].created_at - timedelta(days=1))
    assert project_agreement(project, filters=window).as_dict()["left_rate"] == 0.5


# Concurrency: the place stays the rater's


@pytest.mark.django_db(transaction=True)
def test_correcting_while_others_race_for_the_pair_never_frees_the_place(
    make_project, make_pairs, make_rater
):
    """Quota 2 on one pair: rater A has judged it. A corrects it again and again while six raters race
    for the one place left: exactly one of them gets it, A keeps theirs, and every correction is kept."""
    project = make_project(judgments_per_pair=2, correction_seconds=600)
    make_pairs(project, 1)
    owner = make_rater(project)
    judgment = _judged(project, owner)
    racers = [make_rater(project) for _ in range(6)]
    go = threading.Event()

    def correct(n):
        go.wait()
        done = 0
        for i in range(n):
            services.judgment_correct(judgment_id=judgment.pk, user=owner, choice=("right", "left")[i % 2])
            done += 1
        return done

    def race(user):
        go.set()
        served = services.assignment_next(project=project, user=user)
        if served is None:
            return None
        return services.judgment_record(assignment_id=served.assignment.pk, user=user, choice="tie").pk

    outcomes = in_parallel(lambda job, arg: job(arg), [(correct, 8), *[(race, user) for user in racers]])
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert outcomes[0] == 8
    assert len([o for o in outcomes[1:] if o is not None]) == 1
    per_rater = Counter(Judgment.objects.values_list("rater_id", flat=True))
    assert len(per_rater) == 2 and set(per_rater.values()) == {1}
    assert Judgment.objects.filter(pk=judgment.pk, rater__user=owner).exists()
    assert Pair.objects.get().judgment_count == 2
    assert judgment.revisions.count() == 8
    # Each revision holds the answer the one before it replaced: none lost, none doubled.
    chain = list(judgment.revisions.order_by("id").values_list("answered_at", "replaced_at"))
    assert all(chain[i][1] == chain[i + 1][0] for i in range(len(chain) - 1))


@pytest.mark.django_db(transaction=True)
def test_a_full_pair_stays_full_while_its_rater_corrects(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1, correction_seconds=600)
    make_pairs(project, 1)
    owner = make_rater(project)
    judgment = _judged(project, owner)
    racers = [make_rater(project) for _ in range(4)]

    def call(kind, user):
        if kind == "correct":
            return services.judgment_correct(judgment_id=judgment.pk, user=user, choice="tie").pk
        return services.assignment_next(project=project, user=user)

    outcomes = in_parallel(call, [("correct", owner), *[("next", user) for user in racers]])
    assert outcomes[0] == judgment.pk
    assert outcomes[1:] == [None] * 4
    assert Judgment.objects.count() == 1 and Pair.objects.get().judgment_count == 1


@pytest.mark.django_db(transaction=True)
def test_two_corrections_at_once_keep_both_earlier_answers(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1, correction_seconds=600)
    make_pairs(project, 1)
    user = make_rater(project)
    judgment = _judged(project, user)
    first = judgment.choice
    outcomes = in_parallel(
        lambda choice: services.judgment_correct(judgment_id=judgment.pk, user=user, choice=choice).choice,
        [("right",), ("tie",)],
    )
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    judgment.refresh_from_db()
    revisions = list(judgment.revisions.order_by("id").values_list("choice", flat=True))
    # Serialised by the judgment's row lock: the second replaced the first's answer, not the original.
    assert revisions[0] == first and len(revisions) == 2
    assert {revisions[1], judgment.choice} == set(outcomes)


# The API


def test_my_judgments_lists_the_callers_own_newest_first_with_revisions(project, make_rater, api):
    user, other = make_rater(project), make_rater(project)
    mine = [_judged(project, user, strength=1) for _ in range(3)]
    _judged(project, other, strength=1)
    services.judgment_correct(judgment_id=mine[0].pk, user=user, choice="tie")
    client = api(user)
    body = client.get(MY.format("fix"), {"page_size": 2}).json()
    assert [r["judgment"] for r in body["results"]] == [mine[2].pk, mine[1].pk]
    older = client.get(body["next"]).json()["results"]
    assert [r["judgment"] for r in older] == [mine[0].pk]
    row = older[0]
    pair = Pair.objects.get(pk=mine[0].pair_id)
    shown_a_left = mine[0].shown_left == "a"
    assert (row["left"], row["right"]) == (
        (pair.response_a, pair.response_b) if shown_a_left else (pair.response_b, pair.response_a)
    )
    assert (row["choice"], row["strength"]) == ("tie", None)
    assert [(r["choice"], r["strength"], r["shown_left"]) for r in row["revisions"]] == [
        ("left", 1, mine[0].shown_left)
    ]
    assert row["correctable_until"] is not None
    assert api(other).get(MY.format("fix")).json()["results"][0]["judgment"] not in {j.pk for j in mine}


def test_correction_through_the_api(project, make_rater, api):
    user = make_rater(project)
    client = api(user)
    assignment = client.post("/api/v1/projects/fix/next/").json()["assignment"]
    answer = client.post(
        f"/api/v1/assignments/{assignment}/judgment/", {"choice": "left", "strength": 1}, format="json"
    ).json()
    assert answer["correctable_until"] is not None
    response = client.post(
        CORRECT.format(answer["judgment"]),
        {"choice": "right", "strength": 2, "rationale": "slip"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["choice"], body["strength"], body["rationale"]) == ("right", 2, "slip")
    assert [r["choice"] for r in body["revisions"]] == ["left"]


@pytest.mark.parametrize(
    "body",
    [
        {"choice": "right", "strength": "2"},
        {"choice": "right", "strength": 2.0},
        {"choice": "right", "strength": 2, "rationale": 123},
        {"choice": "b", "strength": 2},
        {"choice": "right", "strength": 2, "next": True},
        {"choice": "right", "strength": 2, "client_time_ms": 5},
        {"strength": 2},
        {"choice": "tie", "strength": 2},
    ],
)
def test_a_correction_body_is_strictly_typed(project, make_rater, api, body):
    user = make_rater(project)
    judgment = _judged(project, user, strength=1)
    response = api(user).post(CORRECT.format(judgment.pk), body, format="json")
    assert response.status_code == 400, response.content
    assert not judgment.revisions.exists()


def test_correction_permissions(project, make_rater, api, admin_user):
    owner, other = make_rater(project), make_rater(project)
    judgment = _judged(project, owner, strength=1)
    body = {"choice": "right", "strength": 2}
    assert api(None).post(CORRECT.format(judgment.pk), body, format="json").status_code == 401
    assert api(None).get(MY.format("fix")).status_code == 401
    refused = api(other).post(CORRECT.format(judgment.pk), body, format="json")
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    # Staff see every project and every judgment in the exports, but correct only their own.
    assert api(admin_user).post(CORRECT.format(judgment.pk), body, format="json").status_code == 404
    assert api(admin_user).get(MY.format("fix")).json()["results"] == []
    # A rater cannot read the staff's list of all judgments, and does not see another's in their own.
    assert api(other).get("/api/v1/projects/fix/judgments/").status_code == 403
    assert api(other).get(MY.format("fix")).json()["results"] == []
    # Another project's raters do not see this project at all.
    outsider = make_rater()
    assert api(outsider).get(MY.format("fix")).status_code == 404
    Membership.objects.filter(user=owner).delete()
    assert api(owner).post(CORRECT.format(judgment.pk), body, format="json").status_code == 403
    assert not judgment.revisions.exists()


def test_a_judgments_answer_says_until_when_it_may_be_corrected(make_project, make_pairs, make_rater, api):
    for seconds in (0, 90):
        project = make_project(correction_seconds=seconds)
        make_pairs(project, 1)
        client = api(make_rater(project))
        assignment = client.post(f"/api/v1/projects/{project.slug}/next/").json()["assignment"]
        answer = client.post(f"/api/v1/assignments/{assignment}/judgment/", {"choice": "left"}, format="json")
        until = answer.json()["correctable_until"]
        if seconds == 0:
            assert until is None
        else:
            created = Judgment.objects.get(assignment_id=assignment).created_at
            assert until == (created + timedelta(seconds=90)).isoformat().replace("+00:00", "Z")


def test_a_correction_past_the_window_is_409_with_its_code(project, make_rater, api):
    user = make_rater(project)
    judgment = _judged(project, user, strength=1)
    Judgment.objects.filter(pk=judgment.pk).update(created_at=timezone.now() - timedelta(seconds=121))
    response = api(user).post(CORRECT.format(judgment.pk), {"choice": "right", "strength": 1}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "correction_window_closed"


def test_undo_finds_the_last_judgment_within_the_window(project, make_rater):
    user = make_rater(project)
    first, last = _judged(project, user, strength=1), _judged(project, user, strength=1)
    undo = selectors.judgment_to_undo(project=project, rater_id=last.rater_id, now=last.created_at)
    assert undo["id"] == last.pk != first.pk
    late = last.created_at + timedelta(seconds=121)
    assert selectors.judgment_to_undo(project=project, rater_id=last.rater_id, now=late) is None
