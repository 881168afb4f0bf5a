"""Rating over the REST API: next pair, judgment, skip, and each of their error codes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import Assignment, AssignmentStatus, Judgment


@pytest.fixture
def project(make_project, make_pairs):
    project = make_project("rate", judgments_per_pair=2)
    make_pairs(project, 3)
    return project


NEXT = "/api/v1/projects/rate/next/"


def _judge(client, assignment_id, **body):
    return client.post(f"/api/v1/assignments/{assignment_id}/judgment/", body, format="json")


# Next


def test_next_serves_a_pair_shown_left_and_right(project, make_rater, api):
    client = api(make_rater(project))
    response = client.post(NEXT)
    assert response.status_code == 200
    body = response.json()
    assignment = Assignment.objects.get(pk=body["assignment"])
    pair = assignment.pair
    assert body["pair"] == pair.pk and body["prompt"] == pair.prompt
    shown = {"a": pair.response_a, "b": pair.response_b}
    hidden = "b" if assignment.shown_left == "a" else "a"
    assert (body["left"], body["right"]) == (shown[assignment.shown_left], shown[hidden])
    assert "response_a" not in body and "response_b" not in body
    assert body["expires_at"].startswith(assignment.lease_expires_at.strftime("%Y-%m-%dT%H:%M"))
    assert body["progress"] == {"done": 0, "available": 3}  # the pair being served counts
    assert body["project"] == {
        "slug": "rate",
        "allow_tie": True,
        "strength_levels": 0,
        "rationale": "optional",
    }


def test_the_second_rater_of_a_pair_sees_it_the_other_way_round(project, make_rater, api):
    first = api(make_rater(project)).post(NEXT).json()
    second = api(make_rater(project)).post(NEXT).json()
    assert first["pair"] == second["pair"]
    assert (first["left"], first["right"]) == (second["right"], second["left"])


def test_asking_again_returns_the_same_assignment(project, make_rater, api):
    client = api(make_rater(project))
    first = client.post(NEXT).json()
    again = client.post(NEXT).json()
    assert again["assignment"] == first["assignment"]
    assert Assignment.objects.count() == 1


def test_next_is_204_when_nothing_is_left(project, make_rater, api):
    client = api(make_rater(project))
    for _ in range(3):
        assignment_id = client.post(NEXT).json()["assignment"]
        assert _judge(client, assignment_id, choice="left").status_code == 201
    response = client.post(NEXT)
    assert response.status_code == 204
    assert response.content == b""


def test_next_on_a_project_the_rater_is_not_in_is_404(project, make_project, make_rater, api):
    make_project("other")
    client = api(make_rater(project))
    response = client.post("/api/v1/projects/other/next/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert not Assignment.objects.exists()


def test_staff_can_rate_too(project, admin_user, api):
    response = api(admin_user).post(NEXT)
    assert response.status_code == 200
    assert _judge(api(admin_user), response.json()["assignment"], choice="tie").status_code == 201


# Judgment


def test_a_judgment_is_recorded_as_a_or_b(project, make_rater, api):
    client = api(make_rater(project))
    served = client.post(NEXT).json()
    response = _judge(client, served["assignment"], choice="left", rationale="Clearer.", client_time_ms=5120)
    assert response.status_code == 201
    body = response.json()
    assignment = Assignment.objects.get(pk=served["assignment"])
    assert body["choice"] == assignment.shown_left
    assert body["strength"] is None and body["time_on_task_ms"] >= 0
    judgment = Judgment.objects.get(pk=body["judgment"])
    assert (judgment.choice, judgment.rationale, judgment.client_time_ms) == (
        assignment.shown_left,
        "Clearer.",
        5120,
    )
    assert assignment.status == AssignmentStatus.JUDGED
    assert client.post(NEXT).json()["progress"]["done"] == 1


def test_choosing_right_records_the_side_shown_on_the_right(project, make_rater, api):
    client = api(make_rater(project))
    served = client.post(NEXT).json()
    shown_left = Assignment.objects.get(pk=served["assignment"]).shown_left
    body = _judge(client, served["assignment"], choice="right").json()
    assert body["choice"] == ("b" if shown_left == "a" else "a")


def test_strength_is_recorded_when_the_project_asks_for_it(make_project, make_pairs, make_rater, api):
    project = make_project("strong", strength_levels=3)
    make_pairs(project, 1)
    client = api(make_rater(project))
    served = client.post("/api/v1/projects/strong/next/").json()
    assert served["project"]["strength_levels"] == 3
    missing = _judge(client, served["assignment"], choice="left")
    assert missing.status_code == 400
    assert missing.json()["errors"] == [{"field": "strength", "message": "Required: 1 to 3."}]
    too_big = _judge(client, served["assignment"], choice="left", strength=4)
    assert too_big.status_code == 400
    response = _judge(client, served["assignment"], choice="left", strength=2)
    assert response.status_code == 201
    assert response.json()["strength"] == 2


@pytest.mark.parametrize(
    ("settings_", "body", "field"),
    [
        ({}, {"choice": "a"}, "choice"),
        ({}, {}, "choice"),
        ({"allow_tie": False}, {"choice": "tie"}, "choice"),
        ({}, {"choice": "left", "strength": 2}, "strength"),
        ({"rationale": "required"}, {"choice": "left"}, "rationale"),
        ({"rationale": "off"}, {"choice": "left", "rationale": "Because."}, "rationale"),
        ({}, {"choice": "left", "client_time_ms": -1}, "client_time_ms"),
        ({}, {"choice": "left", "strength": "lots"}, "strength"),
        ({"strength_levels": 3}, {"choice": "left", "strength": True}, "strength"),
        ({"strength_levels": 3}, {"choice": "left", "strength": 0}, "strength"),
        ({}, {"choice": "up"}, "choice"),
        ({}, {"choice": "left", "client_time_ms": "soon"}, "client_time_ms"),
    ],
)
def test_a_bad_judgment_is_400_and_records_nothing(
    make_project, make_pairs, make_rater, api, settings_, body, field
):
    project = make_project("strict", **settings_)
    make_pairs(project, 1)
    client = api(make_rater(project))
    served = client.post("/api/v1/projects/strict/next/").json()
    response = _judge(client, served["assignment"], **body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert not Judgment.objects.exists()


def test_judging_twice_is_409_already_judged(project, make_rater, api):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    first = _judge(client, assignment_id, choice="left")
    second = _judge(client, assignment_id, choice="right")
    assert second.status_code == 409
    assert second.json()["code"] == "already_judged"
    assert second.json()["judgment"] == first.json()["judgment"]
    assert Judgment.objects.count() == 1


def test_judging_someone_elses_assignment_is_404(project, make_rater, api):
    owner = api(make_rater(project))
    assignment_id = owner.post(NEXT).json()["assignment"]
    response = _judge(api(make_rater(project)), assignment_id, choice="left")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert not Judgment.objects.exists()


def test_judging_an_assignment_that_does_not_exist_is_404(project, make_rater, api):
    response = _judge(api(make_rater(project)), 999_999, choice="left")
    assert response.status_code == 404


def test_a_late_judgment_after_the_place_went_to_another_rater_is_409(
    make_project, make_pairs, make_rater, api
):
    project = make_project("late", judgments_per_pair=1)
    make_pairs(project, 1)
    slow = make_rater(project)
    late = services.assignment_next(
        project=project, user=slow, now=timezone.now() - timedelta(hours=1)
    ).assignment
    taken = api(make_rater(project)).post("/api/v1/projects/late/next/").json()
    assert taken["pair"] == late.pair_id
    response = _judge(api(slow), late.pk, choice="left")
    assert response.status_code == 409
    assert response.json()["code"] == "assignment_expired"
    assert not Judgment.objects.exists()


def test_a_rater_removed_from_the_project_cannot_judge(project, make_rater, admin_user, api):
    rater = make_rater(project, username="rita")
    client = api(rater)
    assignment_id = client.post(NEXT).json()["assignment"]
    api(admin_user).delete("/api/v1/projects/rate/raters/rita/")
    response = _judge(client, assignment_id, choice="left")
    assert response.status_code == 403
    assert not Judgment.objects.exists()


# Skip


def test_a_skipped_pair_is_not_served_again(project, make_rater, api):
    client = api(make_rater(project))
    served = client.post(NEXT).json()
    response = client.post(
        f"/api/v1/assignments/{served['assignment']}/skip/", {"reason": "Unsure"}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {"assignment": served["assignment"], "status": "skipped"}
    assert Assignment.objects.get(pk=served["assignment"]).skip_reason == "Unsure"
    following = client.post(NEXT).json()
    assert following["pair"] != served["pair"]
    # Three pairs: one skipped, one held now, one still to come.
    assert following["progress"]["available"] == 2


def test_judging_a_skipped_assignment_is_409(project, make_rater, api):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    client.post(f"/api/v1/assignments/{assignment_id}/skip/", {}, format="json")
    response = _judge(client, assignment_id, choice="left")
    assert response.status_code == 409
    assert response.json()["code"] == "assignment_skipped"


def test_skipping_a_judged_assignment_is_409(project, make_rater, api):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    _judge(client, assignment_id, choice="left")
    response = client.post(f"/api/v1/assignments/{assignment_id}/skip/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "already_judged"


def test_skipping_someone_elses_assignment_is_404(project, make_rater, api):
    assignment_id = api(make_rater(project)).post(NEXT).json()["assignment"]
    response = api(make_rater(project)).post(f"/api/v1/assignments/{assignment_id}/skip/", {}, format="json")
    assert response.status_code == 404
    assert Assignment.objects.get(pk=assignment_id).status == AssignmentStatus.ACTIVE


def test_available_counts_only_this_raters_finished_pairs(make_project, make_pairs, make_rater, api):
    """Another rater's open assignment on a pair this rater judged must not put that pair back."""
    project = make_project("shared", judgments_per_pair=2)
    make_pairs(project, 4)
    first, second = api(make_rater(project)), api(make_rater(project))
    served = first.post("/api/v1/projects/shared/next/").json()
    first.post(f"/api/v1/assignments/{served['assignment']}/judgment/", {"choice": "left"}, format="json")
    assert second.post("/api/v1/projects/shared/next/").json()["pair"] == served["pair"]  # nearest completion
    assert first.post("/api/v1/projects/shared/next/").json()["progress"] == {"done": 1, "available": 3}


# One round trip: judgment or skip with "next": true


def test_judgment_with_next_answers_with_the_next_pair_as_next_serves_it(project, make_rater, api):
    client = api(make_rater(project))
    first = client.post(NEXT).json()
    response = _judge(client, first["assignment"], choice="left", next=True)
    assert response.status_code == 201
    body = response.json()
    judgment = Judgment.objects.get()
    assert body["judgment"] == judgment.pk and body["choice"] == judgment.choice
    served = body["next"]
    assert served["assignment"] != first["assignment"] and served["pair"] != first["pair"]
    assert served["progress"] == {"done": 1, "available": 2}
    assert body["retry_after"] is None
    # The same body as `next` gives for the assignment now held.
    assert client.post(NEXT).json() == served


def test_judgment_without_next_answers_as_before(project, make_rater, api):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    body = _judge(client, assignment_id, choice="tie").json()
    assert set(body) == {"judgment", "choice", "strength", "time_on_task_ms", "correctable_until"}
    assert not Assignment.objects.filter(status=AssignmentStatus.ACTIVE).exists()


def test_judgment_with_next_on_the_last_pair_says_done(make_project, make_pairs, make_rater, api):
    project = make_project("last", judgments_per_pair=1)
    make_pairs(project, 1)
    client = api(make_rater(project))
    assignment_id = client.post("/api/v1/projects/last/next/").json()["assignment"]
    body = _judge(client, assignment_id, choice="right", next=True).json()
    assert body["next"] is None and body["retry_after"] is None
    assert Judgment.objects.count() == 1


def test_judgment_with_next_says_when_to_come_back(make_project, make_pairs, make_rater, api):
    project = make_project("wait", judgments_per_pair=1)
    make_pairs(project, 2)
    holder, client = api(make_rater(project)), api(make_rater(project))
    holder.post("/api/v1/projects/wait/next/")
    assignment_id = client.post("/api/v1/projects/wait/next/").json()["assignment"]
    body = _judge(client, assignment_id, choice="left", next=True).json()
    assert body["next"] is None
    assert 1 <= body["retry_after"] <= project.lease_seconds


def test_skip_with_next_answers_with_the_next_pair(project, make_rater, api):
    client = api(make_rater(project))
    first = client.post(NEXT).json()
    response = client.post(
        f"/api/v1/assignments/{first['assignment']}/skip/", {"reason": "", "next": True}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["assignment"] == first["assignment"] and body["status"] == "skipped"
    assert body["next"]["pair"] != first["pair"] and body["next"]["progress"] == {"done": 0, "available": 2}


# JSON true and false only: DRF's BooleanField would take "yes", "on", "1", 1 and 0 as well.
BAD_NEXT = ["maybe", 2, None, [], {"x": 1}, "yes", "on", "1", "true", "false", 1, 0, 1.0]


@pytest.mark.parametrize("value", BAD_NEXT)
def test_a_bad_next_flag_is_400_and_records_nothing(project, make_rater, api, value):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    response = _judge(client, assignment_id, choice="left", next=value)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "next"
    assert not Judgment.objects.exists()


@pytest.mark.parametrize("value", BAD_NEXT)
def test_a_bad_next_flag_on_skip_is_400_and_skips_nothing(project, make_rater, api, value):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    response = client.post(f"/api/v1/assignments/{assignment_id}/skip/", {"next": value}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "next"
    assert Assignment.objects.get(pk=assignment_id).status == AssignmentStatus.ACTIVE


@pytest.mark.parametrize("value", [True, False])
def test_next_takes_json_true_and_false(project, make_rater, api, value):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    body = _judge(client, assignment_id, choice="left", next=value).json()
    assert ("next" in body) is value


def test_a_rationale_over_the_cap_is_400_and_records_nothing(project, make_rater, api):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    response = _judge(client, assignment_id, choice="left", rationale="x" * 10_001)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "rationale"
    assert not Judgment.objects.exists()
    assert _judge(client, assignment_id, choice="left", rationale="x" * 10_000).status_code == 201


def test_a_skip_reason_over_the_cap_is_400(project, make_rater, api):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    response = client.post(
        f"/api/v1/assignments/{assignment_id}/skip/", {"reason": "x" * 2001}, format="json"
    )
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "reason"


def test_a_refused_judgment_with_next_serves_nothing_new(project, make_rater, api):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    _judge(client, assignment_id, choice="left")
    again = _judge(client, assignment_id, choice="left", next=True)
    assert again.status_code == 409 and "next" not in again.json()
    assert not Assignment.objects.filter(status=AssignmentStatus.ACTIVE).exists()


@pytest.mark.django_db(transaction=True)
def test_raters_asking_at_once_for_one_pair_with_a_place_each_are_served(
    make_project, make_pairs, make_rater, api
):
    """The reviewer's race: K raters, one pair with K places, `next` at the same moment. Each is served, or
    at worst told to ask again in a second; never that they are done, nor to wait for a lease."""
    from tests.annotation.test_engine import in_parallel

    raters = 3
    for trial in range(6):
        slug = f"race-{trial}"
        project = make_project(slug, judgments_per_pair=raters)
        make_pairs(project, 1)
        clients = [api(make_rater(project)) for _ in range(raters)]
        answers = in_parallel(
            lambda client, slug=slug: client.post(f"/api/v1/projects/{slug}/next/"), [(c,) for c in clients]
        )
        got = [(answer.status_code, answer.headers.get("Retry-After")) for answer in answers]
        assert all(outcome in {(200, None), (204, "1")} for outcome in got), (trial, got)


def test_a_judgment_body_is_refused_past_its_own_small_limit_before_it_is_read(project, make_rater, api):
    """A judgment's body limit is its own (128 KiB), not the imports' 50 MiB: a 49 MiB rationale used to be
    parsed before the 10,000-character check."""
    import json

    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    url = f"/api/v1/assignments/{assignment_id}/judgment/"
    huge = json.dumps({"choice": "left", "rationale": "x" * 200_000})
    response = client.post(url, huge, content_type="application/json")
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    skip = client.post(f"/api/v1/assignments/{assignment_id}/skip/", huge, content_type="application/json")
    assert skip.status_code == 413
    # The longest rationale, written the longest way (each emoji as a JSON escape pair), still fits.
    longest = json.dumps({"choice": "left", "rationale": "\U0001f600" * 10_000})
    assert len(longest) > 100_000
    assert client.post(url, longest, content_type="application/json").status_code == 201


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("strength", "2", "Must be an integer."),
        ("strength", 2.0, "Must be an integer."),
        ("strength", True, "Must be an integer."),
        ("rationale", 123, "Must be a string."),
        ("client_time_ms", "5", "Must be an integer."),
        ("choice", 1, "Must be a string."),
        ("next", "yes", "Must be true or false."),
        ("next", 1, "Must be true or false."),
    ],
)
def test_every_judgment_field_takes_its_own_json_type_only(project, make_rater, api, field, value, message):
    client = api(make_rater(project))
    assignment_id = client.post(NEXT).json()["assignment"]
    response = _judge(client, assignment_id, **{"choice": "left", field: value})
    assert response.status_code == 400
    assert {"field": field, "message": message} in response.json()["errors"]
    assert not Judgment.objects.exists()


def test_project_settings_take_their_own_json_type_only(admin_user, api):
    answer = api(admin_user).post(
        "/api/v1/projects/",
        {"slug": "typed", "name": "Typed", "judgments_per_pair": "3", "allow_tie": "true"},
        format="json",
    )
    assert answer.status_code == 400
    errors = {e["field"]: e["message"] for e in answer.json()["errors"]}
    assert errors == {"judgments_per_pair": "Must be an integer.", "allow_tie": "Must be true or false."}


def test_next_and_the_answer_with_next_carry_the_conversation(project, make_rater, api):
    from annotation.models import Pair

    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    Pair.objects.filter(external_id="p0").update(messages=conversation)
    client = api(make_rater(project))
    served = []
    body = client.post(NEXT).json()
    while body:
        served.append(body)
        answer = _judge(client, body["assignment"], choice="left", next=True).json()
        body = answer["next"]
    # Every pair once, through `next` and through the judgment's `next` (the claim's own read).
    assert len(served) == 3
    by_pair = {body["pair"]: body["messages"] for body in served}
    assert by_pair == {
        pair.pk: (conversation if pair.external_id == "p0" else None) for pair in Pair.objects.all()
    }
