"""GET /api/v1/projects/{slug}/leaderboard/, its downloads and the selector behind them: who may call
them, that the battles are the project's judgments, the options and filters, the cache and the queries."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation import services
from annotation.models import Judgment
from annotation.selectors import ExportFilter, LeaderboardOptions, project_leaderboard

URL = "/api/v1/projects/{}/leaderboard/"
START = datetime(2026, 11, 1, 12, tzinfo=UTC)
STRENGTH = {"alpha": 1.0, "beta": 0.0, "gamma": -1.0}


def import_battles(
    project, n_pairs=30, raters=("ann", "bob", "cy"), seed=1, models=STRENGTH, always_left=None
):
    """Pairs between the models (and one gold pair, one pair without models), judged by imported raters
    who mostly prefer the stronger model."""
    rng = random.Random(seed)
    names = list(models)
    items, pair_models = [], {}
    for i in range(n_pairs):
        a, b = rng.sample(names, 2)
        pair_models[f"p{i}"] = (a, b)
        items.append(
            {"external_id": f"p{i}", "prompt": f"Prompt {i}", "response_a": f"A {i}", "response_b": f"B {i}",
             "model_a": a, "model_b": b}
        )  # fmt: skip
    items.append({"external_id": "gold", "prompt": "G", "response_a": "x", "response_b": "y", "gold": "a",
                  "model_a": names[0], "model_b": names[1]})  # fmt: skip
    items.append({"external_id": "nameless", "prompt": "N", "response_a": "x", "response_b": "y"})
    services.pairs_import(project=project, items=items)
    judgments = []
    for pair in [*pair_models, "gold", "nameless"]:
        for rater in raters:
            a, b = pair_models.get(pair, (names[0], names[1]))
            p = 1 / (1 + np.exp(models[b] - models[a]))
            left = rng.choice("ab")
            choice = (
                rng.choice(["a", "b", "tie"]) if rng.random() < 0.2 else ("a" if rng.random() < p else "b")
            )
            if rater == always_left:
                choice = left
            judgments.append(
                {"pair": pair, "rater": rater, "choice": choice, "shown_left": left,
                 "created_at": (START + timedelta(hours=len(judgments))).isoformat()}
            )  # fmt: skip
    services.judgments_import(project=project, items=judgments)
    return pair_models


@pytest.fixture
def project(make_project):
    project = make_project("arena")
    import_battles(project)
    return project


def test_only_staff_may_read_the_leaderboard(project, api, admin_user, make_rater):
    rater = make_rater(project)
    for url in (
        URL,
        "/api/v1/projects/{}/export/leaderboard.csv",
        "/api/v1/projects/{}/export/leaderboard.json",
    ):
        assert api(None).get(url.format("arena")).status_code == 401
        assert api(rater).get(url.format("arena")).status_code == 403
        assert api(admin_user).get(url.format("nope")).status_code == 404
        assert api(admin_user).get(url.format("arena")).status_code == 200


def test_the_battles_are_the_judgments_of_named_regular_pairs(project, api, admin_user):
    body = api(admin_user).get(URL.format("arena"), {"rounds": 50}).json()
    judgments = Judgment.objects.filter(project=project).select_related("pair")
    battles = [j for j in judgments if j.pair.gold is None and j.pair.model_a]
    assert body["judgments"] == judgments.count() == 32 * 3
    assert body["battles"] == len(battles) == 30 * 3
    expected = {}
    for j in battles:
        for side, model in (("a", j.pair.model_a), ("b", j.pair.model_b)):
            row = expected.setdefault(model, {"battles": 0, "wins": 0, "losses": 0, "ties": 0})
            row["battles"] += 1
            outcome = "ties" if j.choice == "tie" else "wins" if j.choice == side else "losses"
            row[outcome] += 1
    assert {
        m["model"]: {k: m[k] for k in ("battles", "wins", "losses", "ties")} for m in body["models"]
    } == expected
    # Best first, on the scale the body states, the mean at 1000.
    ratings = [m["rating"] for m in body["models"]]
    assert ratings == sorted(ratings, reverse=True) and np.mean(ratings) == pytest.approx(1000)
    assert [m["model"] for m in body["models"]] == body["order"] == ["alpha", "beta", "gamma"]
    for m in body["models"]:
        assert m["interval"][0] <= m["rating"] <= m["interval"][1]
        assert m["style_controlled"] is not None
    assert set(body["style_coefficients"]) == {"length", "headers", "list_items", "bold"}
    assert body["win_rate"][0][0] is None and 0 <= body["win_rate"][0][1] <= 1
    assert body["predicted_win"][0][1] + body["predicted_win"][1][0] == pytest.approx(1)
    assert body["interval"]["rounds"] == 50 and body["scale"]["anchor"] == "mean"


def test_options_reference_seed_rounds_and_style(project, api, admin_user):
    client = api(admin_user)
    body = client.get(
        URL.format("arena"), {"reference": "beta", "seed": 3, "rounds": 30, "style": "false"}
    ).json()
    assert {m["model"]: m["rating"] for m in body["models"]}["beta"] == pytest.approx(1000)
    assert body["style_coefficients"] is None and all(m["style_controlled"] is None for m in body["models"])
    again = client.get(URL.format("arena"), {"reference": "beta", "seed": 3, "rounds": 30, "style": "false"})
    assert again.json()["models"] == body["models"]
    for bad in ({"reference": "delta"}, {"rounds": 2001}, {"rounds": -1}, {"seed": -1}, {"min_votes": 0},
                {"round": 5}):  # fmt: skip
        response = client.get(URL.format("arena"), bad)
        assert response.status_code == 400, bad
        assert "detail" in response.json()


def test_the_export_filters_choose_the_battles(project, api, admin_user):
    client = api(admin_user)
    until = (START + timedelta(hours=30)).isoformat()
    body = client.get(URL.format("arena"), {"until": until, "rounds": 0}).json()
    assert body["judgments"] == 30 and body["battles"] == 30
    body = client.get(URL.format("arena"), {"since": until, "rounds": 0}).json()
    assert body["judgments"] == 96 - 30
    # min_votes counts the judgments of the window: with the window cutting pair 10 in two, it goes.
    cut = (START + timedelta(hours=31)).isoformat()
    assert client.get(URL.format("arena"), {"until": cut, "rounds": 0}).json()["battles"] == 31
    assert (
        client.get(URL.format("arena"), {"until": cut, "min_votes": 3, "rounds": 0}).json()["battles"] == 30
    )


def test_flagged_raters_can_be_left_out(make_project, api, admin_user):
    project = make_project("biased")
    raters = ("ann", "bob", "cy", "dee", "eve")
    import_battles(
        project, n_pairs=40, raters=raters, always_left="bob", seed=5, models={"x": 3.0, "y": 0.0, "z": -3.0}
    )
    bob = project.imported_raters.get(source_id="bob").pseudonym
    client = api(admin_user)
    agreement = client.get("/api/v1/projects/biased/agreement/").json()
    flagged = sorted(r["rater"] for r in agreement["per_rater"] if r["flags"])
    assert bob in flagged and len(flagged) < len(raters)
    kept = client.get(URL.format("biased"), {"rounds": 0}).json()
    left = client.get(URL.format("biased"), {"rounds": 0, "exclude_flagged": "true"}).json()
    assert kept["left_out_raters"] == [] and left["left_out_raters"] == flagged
    # Each rater judged each of the 40 named pairs once.
    assert left["battles"] == kept["battles"] - 40 * len(flagged)
    assert left["options"]["exclude_flagged"] is True


def test_the_csv_is_one_row_per_model_with_formulas_neutralised(make_project, api, admin_user):
    project = make_project("csv")
    import_battles(project, models={"=HYPERLINK(1)": 0.5, "plain": 0.0})
    response = api(admin_user).get("/api/v1/projects/csv/export/leaderboard.csv", {"rounds": 20})
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="csv-leaderboard.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["model"] for row in rows} == {"'=HYPERLINK(1)", "plain"}
    assert all(float(row["lower"]) <= float(row["rating"]) <= float(row["upper"]) for row in rows)
    as_json = api(admin_user).get("/api/v1/projects/csv/export/leaderboard.json", {"rounds": 20})
    body = json.loads(b"".join(as_json.streaming_content))
    assert {m["model"] for m in body["models"]} == {"=HYPERLINK(1)", "plain"}
    # ?raw=true as on every CSV export (it was refused here as an unknown parameter).
    raw = api(admin_user).get("/api/v1/projects/csv/export/leaderboard.csv", {"rounds": 20, "raw": "true"})
    assert raw.status_code == 200, raw.content
    rows = list(csv.DictReader(io.StringIO(b"".join(raw.streaming_content).decode())))
    assert {row["model"] for row in rows} == {"=HYPERLINK(1)", "plain"}
    assert api(admin_user).get(URL.format("csv"), {"raw": "true"}).status_code == 400  # a download option


def test_an_empty_project_answers_an_empty_board(make_project, api, admin_user):
    make_project("empty")
    response = api(admin_user).get(URL.format("empty"))
    body = json.loads(response.content)  # strict JSON: no NaN
    assert response.status_code == 200
    assert body["models"] == [] and body["battles"] == 0 and body["win_rate"] == []


def test_the_leaderboard_is_cached_until_a_judgment_arrives(
    project, api, admin_user, django_assert_num_queries
):
    client = api(admin_user)
    first = client.get(URL.format("arena")).json()
    # 1 token and user, 2 project, 3 the agreement's fingerprint; the board comes from Redis
    with django_assert_num_queries(3):
        assert client.get(URL.format("arena")).json() == first
    services.judgments_import(
        project=project,
        items=[{"pair": "p0", "rater": "dee", "choice": "tie", "created_at": START.isoformat()}],
    )
    fresh = client.get(URL.format("arena")).json()
    assert fresh["judgments"] == first["judgments"] + 1


@pytest.mark.parametrize("exclude_flagged", [False, True])
def test_queries_do_not_grow_with_the_judgments(make_project, api, admin_user, exclude_flagged):
    client = api(admin_user)
    counts = []
    for n_pairs in (4, 40):  # 12 and 120 judgments
        import_battles(make_project(f"size{n_pairs}"), n_pairs=n_pairs)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(URL.format(f"size{n_pairs}"), {"exclude_flagged": exclude_flagged})
        assert response.status_code == 200
        counts.append(len(captured))
    # 1 token and user, 2 project, 3 fingerprint, 4 judgments (COPY), 5 model names, 6 pairs' ids and
    # model numbers (COPY), 7 their texts (a cursor, for style control); with exclude_flagged the
    # agreement report's own: 8 fingerprint, 9 judgments, 10 pairs, 11 rater names.
    expected = 11 if exclude_flagged else 7
    assert counts == [expected, expected]


def test_the_selector_refuses_an_unknown_reference(project):
    from web.errors import Invalid

    with pytest.raises(Invalid):
        project_leaderboard(project, filters=ExportFilter(), options=LeaderboardOptions(reference="nobody"))


def test_each_pair_carries_its_own_models_and_style_figures(make_project):
    from annotation.leaderboard import response_style
    from annotation.models import Pair
    from annotation.selectors.leaderboard import read_pair_models

    project = make_project("styles")
    services.pairs_import(
        project=project,
        items=[
            {"external_id": f"s{i}", "prompt": "P", "response_a": "# H\n- x\n" * (i % 3) + "a" * i,
             "response_b": "**b**" * (i % 4) + "b", "model_a": f"m{i % 3}", "model_b": f"m{(i + 1) % 3}"}
            for i in range(12)
        ],
    )  # fmt: skip
    ids, model_a, model_b, style_a, style_b, models = read_pair_models(project, style=True)
    assert models == ("m0", "m1", "m2") and list(ids) == sorted(ids)
    pairs = Pair.objects.in_bulk(list(map(int, ids)))
    for k, pk in enumerate(ids):
        pair = pairs[int(pk)]
        assert (models[model_a[k]], models[model_b[k]]) == (pair.model_a, pair.model_b)
        assert tuple(style_a[k]) == response_style(pair.response_a)
        assert tuple(style_b[k]) == response_style(pair.response_b)
    plain = read_pair_models(project, style=False)
    assert list(plain[0]) == list(ids) and plain[3] is None
