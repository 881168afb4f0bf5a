"""GET /api/v1/projects/{slug}/agreement/ and the selector behind it: who may call it, that the rows it
reads give the figures the rows give by brute force, the export filters, and the cache."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from annotation import services
from annotation.models import Judgment, Pair
from annotation.selectors import ExportFilter, project_agreement
from annotation.selectors import agreement as selector

URL = "/api/v1/projects/{}/agreement/"
START = datetime(2026, 11, 1, 12, tzinfo=UTC)


def import_judgments(project, n_pairs=30, raters=("ann", "bob", "cy", "dee"), seed=3, always_left=None):
    """Pairs of unequal lengths (some gold), judged by imported raters over several days."""
    rng = random.Random(seed)
    services.pairs_import(
        project=project,
        items=[
            {
                "external_id": f"p{i}",
                "prompt": f"Prompt {i}",
                "response_a": "a" * rng.randint(1, 40),
                "response_b": "b" * rng.randint(1, 40),
                **({"gold": rng.choice("ab")} if i < 5 else {}),
            }
            for i in range(n_pairs)
        ],
    )
    items = []
    for i in range(n_pairs):
        for rater in rng.sample(raters, rng.randint(1, len(raters))):
            left = rng.choice("ab")
            choice = left if rater == always_left else rng.choice(["a", "a", "b", "tie"])
            items.append(
                {
                    "pair": f"p{i}",
                    "rater": rater,
                    "choice": choice,
                    "shown_left": left,
                    "created_at": (START + timedelta(hours=7 * len(items))).isoformat(),
                }
            )
    services.judgments_import(project=project, items=items)


@pytest.fixture
def project(make_project):
    project = make_project("agree")
    import_judgments(project)
    return project


def test_only_staff_may_read_the_agreement(project, api, admin_user, make_rater):
    assert api(None).get(URL.format("agree")).status_code == 401
    assert api(make_rater(project)).get(URL.format("agree")).status_code == 403
    assert api(admin_user).get(URL.format("nope")).status_code == 404
    assert api(admin_user).get(URL.format("agree")).status_code == 200


def test_the_report_gives_the_figures_of_the_rows(project, api, admin_user):
    body = api(admin_user).get(URL.format("agree")).json()
    rows = list(
        Judgment.objects.filter(project=project).values_list(
            "pair_id", "rater__pseudonym", "choice", "shown_left", "pair__response_a", "pair__response_b"
        )
    )
    gold = dict(Pair.objects.filter(project=project, gold__isnull=False).values_list("pk", "gold"))
    assert gold  # gold pairs count for gold accuracy only, not for the inter-rater figures
    by_pair = {}
    for row in rows:
        if row[0] not in gold:
            by_pair.setdefault(row[0], []).append(row)
    agreeing = total = 0
    for judged in by_pair.values():
        for x, y in itertools.combinations(judged, 2):
            total += 1
            agreeing += x[2] == y[2]
    assert body["percent_agreement"] == pytest.approx(agreeing / total, abs=1e-12)
    decisive_agreeing = decisive_total = 0
    for judged in by_pair.values():
        for x, y in itertools.combinations([j for j in judged if j[2] != "tie"], 2):
            decisive_total += 1
            decisive_agreeing += x[2] == y[2]
    assert body["decisive_agreement"] == pytest.approx(decisive_agreeing / decisive_total, abs=1e-12)
    shared = [j for judged in by_pair.values() if len(judged) >= 2 for j in judged]
    assert (body["pairs"], body["judgments"], body["judgments_total"]) == (
        sum(len(j) >= 2 for j in by_pair.values()),
        len(shared),
        len(rows),
    )
    decisive = [r for r in rows if r[2] != "tie"]
    assert body["left_rate"] == pytest.approx(sum(r[2] == r[3] for r in decisive) / len(decisive))
    lengthed = [r for r in decisive if len(r[4]) != len(r[5])]
    longer = sum((r[2] == "a") == (len(r[4]) > len(r[5])) for r in lengthed)
    assert body["longer_rate"] == pytest.approx(longer / len(lengthed))
    assert (
        body["percent_agreement_interval"][0]
        <= body["percent_agreement"]
        <= body["percent_agreement_interval"][1]
    )
    assert sum(day["judgments"] for day in body["judgments_per_day"]) == len(rows)
    assert body["judgments_per_day"][0]["date"] == "2026-11-01"
    assert body["progress"] == {
        "pairs": 25,
        "complete": body["progress"]["complete"],
        "gold_pairs": 5,
        "judgments_per_pair": 3,
    }
    # Raters by pseudonym only, as in the exports, with their gold accuracy from the gold pairs.
    pseudonyms = {r[1] for r in rows}
    assert {r["rater"] for r in body["per_rater"]} == pseudonyms
    for entry in body["per_rater"]:
        mine = [r for r in rows if r[1] == entry["rater"]]
        assert entry["judgments"] == len(mine)
        on_gold = [r for r in mine if r[0] in gold]
        expected = sum(r[2] == gold[r[0]] for r in on_gold) / len(on_gold) if on_gold else None
        assert entry["gold_accuracy"] == (pytest.approx(expected) if expected is not None else None)
        assert entry["median_time_ms"] is None  # imported judgments have no time on task
    assert "ann" not in json.dumps(body["per_rater"])  # never the source id


def test_the_copy_and_the_cursor_read_the_same_rows(project):
    queryset = (
        Judgment.objects.filter(project=project).order_by().values_list("pair_id", "rater_id", "strength")
    )
    columns = ["t.pair_id", "t.rater_id", "COALESCE(t.strength, -7)"]
    copied = selector.read_int_columns(queryset, columns, copy=True)
    fetched = selector.read_int_columns(queryset, columns, copy=False)
    assert copied.shape == (Judgment.objects.count(), 3)
    assert np.array_equal(np.sort(copied, axis=0), np.sort(fetched, axis=0))
    assert (copied[:, 2] == -7).all()
    with pytest.raises(ValueError, match="NULL"):
        selector.read_int_columns(queryset, ["t.pair_id", "t.strength"], copy=True)


def test_the_export_filters_choose_the_judgments(project, api, admin_user):
    client = api(admin_user)
    everything = client.get(URL.format("agree")).json()
    middle = START + timedelta(hours=7 * 20)
    since = client.get(URL.format("agree"), {"since": middle.isoformat()}).json()
    until = client.get(URL.format("agree"), {"until": middle.isoformat()}).json()
    assert since["judgments_total"] + until["judgments_total"] == everything["judgments_total"]
    assert (
        since["judgments_total"] == Judgment.objects.filter(project=project, created_at__gte=middle).count()
    )
    assert since["filters"]["since"] == middle.isoformat().replace("+00:00", "Z")
    voted = client.get(URL.format("agree"), {"min_votes": 3}).json()
    counts = Pair.objects.filter(project=project, judgment_count__gte=3).values_list(
        "judgment_count", flat=True
    )
    assert voted["judgments_total"] == sum(counts)
    assert project_agreement(project, filters=ExportFilter(min_votes=3)).as_dict()["judgments_total"] == sum(
        counts
    )
    for bad in ({"min_votes": 0}, {"since": "yesterday"}, {"min_vote": 3}):
        response = client.get(URL.format("agree"), bad)
        assert response.status_code == 400, bad


def test_the_report_is_cached_until_a_judgment_arrives(
    project, api, admin_user, make_rater, django_assert_num_queries
):
    client = api(admin_user)
    first = client.get(URL.format("agree")).json()
    # 1 token and user, 2 project, 3 the fingerprint (the project's counters: data version and pair
    # counts), in one statement; the figures come from Redis
    with django_assert_num_queries(3):
        again = client.get(URL.format("agree")).json()
    assert again == first
    rater = make_rater(project)
    # A new pair for the engine to serve this rater (the imported judgments filled the others).
    services.pairs_import(
        project=project, items=[{"external_id": "fresh", "prompt": "P", "response_a": "x", "response_b": "y"}]
    )
    again = client.get(URL.format("agree")).json()
    assignment = services.assignment_next(project=project, user=rater).assignment
    services.judgment_record(assignment_id=assignment.pk, user=rater, choice="left")
    # 1-2 as above, 3 the key (changed), 4 judgments, 5 pairs, 6 rater names
    with django_assert_num_queries(6):
        fresh = client.get(URL.format("agree")).json()
    assert fresh["judgments_total"] == again["judgments_total"] + 1 == first["judgments_total"] + 1
    assert fresh["computed_at"] >= again["computed_at"] >= first["computed_at"]
    timed = [r for r in fresh["per_rater"] if r["median_time_ms"] is not None]
    assert len(timed) == 1 and timed[0]["judgments"] == 1


def test_an_empty_project_answers_nulls_not_errors(make_project, api, admin_user, django_assert_num_queries):
    make_project("empty")
    client = api(admin_user)
    # 1 token and user, 2 project, 3 cache key, 4 judgments, 5 pairs, 6 rater names
    with django_assert_num_queries(6):
        response = client.get(URL.format("empty"))
    body = json.loads(response.content)  # strict JSON: no NaN
    assert response.status_code == 200
    assert (body["pairs"], body["judgments"], body["raters"], body["per_rater"]) == (0, 0, 0, [])
    assert body["percent_agreement"] is None and body["percent_agreement_interval"] == [None, None]
    assert body["ceiling_accuracy"] is None and body["cohen_kappa"] is None
    assert "krippendorff_alpha_ordinal" not in body


def test_ordinal_alpha_when_the_project_records_strength(make_project, api, admin_user):
    project = make_project("strong", strength_levels=3)
    services.pairs_import(
        project=project,
        items=[
            {"external_id": f"s{i}", "prompt": "p", "response_a": "x", "response_b": f"y{i}"}
            for i in range(6)
        ],
    )
    items = [
        {
            "pair": f"s{i}",
            "rater": rater,
            "choice": choice,
            **({"strength": strength} if choice != "tie" else {}),
        }
        for i in range(6)
        for rater, (choice, strength) in zip(
            ("r1", "r2", "r3"),
            [("a", 3), ("a", 2 + i % 2), ("b", 1) if i % 3 == 0 else ("tie", 0)],
            strict=True,
        )
    ]
    services.judgments_import(project=project, items=items)
    body = api(admin_user).get(URL.format("strong")).json()
    assert body["krippendorff_alpha_ordinal"] is not None
    assert body["krippendorff_alpha_ordinal"] != body["krippendorff_alpha"]
    assert body["krippendorff_alpha_ordinal_judgments"] == 18
    # A decisive judgment without a strength, then a smaller scale: left out, and the count says so.
    services.judgments_import(project=project, items=[{"pair": "s0", "rater": "r4", "choice": "a"}])
    project.strength_levels = 2
    project.save()
    body = api(admin_user).get(URL.format("strong")).json()
    # Left out: r4's judgment, r1's strength 3 on every pair and r2's on s1, s3, s5; which leaves r3
    # alone on s1, s3, s5 (no agreement there): r2 and r3 on s0, s2, s4.
    assert body["krippendorff_alpha_ordinal_judgments"] == 6


def test_a_rater_who_always_picks_the_left_side_is_flagged(make_project, api, admin_user):
    project = make_project("biased")
    import_judgments(project, n_pairs=40, always_left="bob", seed=5)
    body = api(admin_user).get(URL.format("biased")).json()
    bob = project.imported_raters.get(source_id="bob").pseudonym
    flags = {r["rater"]: [f["code"] for f in r["flags"]] for r in body["per_rater"]}
    assert "side_bias" in flags[bob]
    reason = next(f["reason"] for r in body["per_rater"] if r["rater"] == bob for f in r["flags"])
    assert "left side in 100%" in reason


def test_the_report_is_computed_again_when_pairs_or_gold_answers_change(project, api, admin_user):
    client = api(admin_user)
    first = client.get(URL.format("agree")).json()
    assert first["progress"]["pairs"] == 25 and first["progress"]["gold_pairs"] == 5
    services.pairs_import(
        project=project,
        items=[
            {"external_id": "new-1", "prompt": "P", "response_a": "x", "response_b": "y"},
            {"external_id": "new-2", "prompt": "P", "response_a": "x", "response_b": "y", "gold": "a"},
        ],
    )
    second = client.get(URL.format("agree")).json()
    assert (second["progress"]["pairs"], second["progress"]["gold_pairs"]) == (26, 6)
    # A gold answer changed (same counts, same ids), through the service the admin's form calls: the
    # gold accuracies change with it.
    pair = Pair.objects.get(project=project, external_id="p0")
    pair.gold = "b" if pair.gold == "a" else "a"
    services.pair_save(pair=pair, adding=False)
    third = client.get(URL.format("agree")).json()
    assert third["computed_at"] > second["computed_at"]
    assert [r["gold_accuracy"] for r in third["per_rater"]] != [
        r["gold_accuracy"] for r in second["per_rater"]
    ]


def test_one_cache_entry_per_project_and_filters_and_a_short_life_for_windows(project, api, admin_user):
    from django.core.cache import cache

    client = api(admin_user)
    redis = cache._cache.get_client()
    for i in range(5):
        client.get(URL.format("agree"))
        services.judgments_import(
            project=project, items=[{"pair": f"p{i}", "rater": f"late-{i}", "choice": "a"}]
        )
    keys = [k for k in redis.keys("*") if b"agreement:" in k and b"chart" not in k]
    assert len(keys) == 1, keys  # overwritten when the judgments change, not one key per state
    assert redis.ttl(keys[0]) > 3600
    client.get(URL.format("agree"), {"since": START.isoformat()})
    windowed = [k for k in redis.keys("*") if b"agreement:" in k and k not in keys]
    assert len(windowed) == 1 and 0 < redis.ttl(windowed[0]) <= selector.WINDOW_CACHE_SECONDS
