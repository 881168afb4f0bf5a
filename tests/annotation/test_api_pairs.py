"""Pair import and listing over the REST API: the three body forms, all-or-nothing, limits, pagination."""

from __future__ import annotations

import json

import pytest

from annotation import services
from annotation.models import Pair


def _items(n: int, prefix: str = "x") -> list[dict]:
    return [
        {
            "external_id": f"{prefix}{i}",
            "prompt": f"Prompt {i}",
            "response_a": f"A{i}",
            "response_b": f"B{i}",
        }
        for i in range(n)
    ]


def _jsonl(items: list) -> str:
    return "\n".join(json.dumps(item) for item in items) + "\n"


@pytest.fixture
def project(make_project):
    return make_project("imports")


@pytest.fixture
def staff(admin_user, api):
    return api(admin_user)


URL = "/api/v1/projects/imports/pairs/"


# The three body forms


def test_import_takes_a_json_list(project, staff):
    items = _items(3)
    items[0] |= {"model_a": "sft-v2", "model_b": "rlhf-v1", "metadata": {"topic": "geo"}, "gold": "a"}
    response = staff.post(URL, items, format="json")
    assert response.status_code == 201
    assert response.json() == {"created": 3, "unchanged": 0}
    first = Pair.objects.get(project=project, external_id="x0")
    assert (first.model_a, first.model_b, first.metadata, first.gold) == (
        "sft-v2",
        "rlhf-v1",
        {"topic": "geo"},
        "a",
    )


def test_import_takes_an_object_with_pairs(project, staff):
    response = staff.post(URL, {"pairs": _items(2)}, format="json")
    assert response.status_code == 201
    assert response.json() == {"created": 2, "unchanged": 0}
    assert Pair.objects.filter(project=project).count() == 2


def test_import_takes_json_lines(project, staff):
    body = _jsonl(_items(4)) + "\n"  # a trailing blank line is fine
    response = staff.post(URL, body, content_type="application/x-ndjson")
    assert response.status_code == 201
    assert response.json() == {"created": 4, "unchanged": 0}
    assert sorted(Pair.objects.values_list("external_id", flat=True)) == ["x0", "x1", "x2", "x3"]


def test_the_same_pair_without_external_id_is_unchanged_when_imported_again(project, staff):
    items = [{"prompt": "p", "response_a": "a", "response_b": "b"}]
    assert staff.post(URL, items, format="json").json() == {"created": 1, "unchanged": 0}
    assert staff.post(URL, items * 2, format="json").json() == {"created": 0, "unchanged": 2}
    other = [{"prompt": "p", "response_a": "a", "response_b": "B"}]  # differs in one letter's case
    assert staff.post(URL, other * 2, format="json").json() == {"created": 1, "unchanged": 1}
    assert Pair.objects.count() == 2


def test_an_object_without_pairs_is_refused(project, staff):
    response = staff.post(URL, {"items": _items(1)}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert not Pair.objects.exists()


# All or nothing


def test_an_invalid_item_stores_nothing_and_is_listed(project, staff):
    items = _items(5)
    items[1]["response_b"] = items[1]["response_a"]
    items[3]["gold"] = "maybe"
    del items[4]["prompt"]
    response = staff.post(URL, items, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and body["detail"]
    assert {(e["index"], e["field"]) for e in body["errors"]} == {
        (1, "response_b"),
        (3, "gold"),
        (4, "prompt"),
    }
    assert all(e["message"] for e in body["errors"])
    assert not Pair.objects.exists()


def test_an_item_that_is_not_an_object_is_refused(project, staff):
    response = staff.post(URL, [*_items(1), "just a string"], format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["index"] == 1
    assert not Pair.objects.exists()


def test_the_same_external_id_twice_in_one_request_stores_nothing(project, staff):
    items = _items(2)
    items[1]["external_id"] = "x0"
    response = staff.post(URL, items, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "index": 1,
            "field": "external_id",
            "message": "'x0' appears twice in this request (first at item 0).",
        }
    ]
    assert not Pair.objects.exists()


def test_reimporting_the_same_content_is_unchanged(project, staff):
    assert staff.post(URL, _items(3), format="json").json() == {"created": 3, "unchanged": 0}
    response = staff.post(URL, _items(4), format="json")
    assert response.status_code == 201
    assert response.json() == {"created": 1, "unchanged": 3}
    assert Pair.objects.count() == 4


def test_reimporting_an_external_id_with_other_content_stores_nothing(project, staff):
    staff.post(URL, _items(2), format="json")
    items = _items(3)
    items[1]["response_a"] = "Changed"
    response = staff.post(URL, items, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(1, "external_id")]
    assert "other content" in errors[0]["message"]
    # Item 2 was valid, but nothing of a failed request is stored.
    assert Pair.objects.count() == 2
    assert Pair.objects.get(external_id="x1").response_a == "A1"


def test_json_lines_with_a_broken_line_stores_nothing(project, staff):
    lines = _jsonl(_items(3)).splitlines()
    lines[1] = '{"prompt": "unterminated'
    response = staff.post(URL, "\n".join(lines), content_type="application/x-ndjson")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "parse_error"
    assert [(e["index"], e["line"]) for e in body["errors"]] == [(1, 2)]
    assert "not valid JSON" in body["errors"][0]["message"]
    assert not Pair.objects.exists()


def test_a_broken_json_body_stores_nothing(project, staff):
    response = staff.post(URL, '[{"prompt": "p",', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert not Pair.objects.exists()


# Limits


def test_a_body_over_the_byte_limit_is_413_before_it_is_read(project, staff, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps(_items(30))
    assert len(body) > 1000
    response = staff.post(URL, body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert "1000 bytes" in response.json()["detail"]
    assert not Pair.objects.exists()


def test_a_body_under_the_byte_limit_is_read(project, staff, settings):
    body = json.dumps(_items(2))
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(body)
    assert staff.post(URL, body, content_type="application/json").status_code == 201


def test_too_many_items_is_413_with_the_limit(project, staff, settings):
    settings.PAIRWISE_MAX_IMPORT_ITEMS = 5
    response = staff.post(URL, _items(6), format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert "the limit is 5" in response.json()["detail"]
    assert not Pair.objects.exists()


def test_an_anonymous_oversized_body_gets_401_not_413(project, client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    response = client.post(URL, json.dumps(_items(3)), content_type="application/json")
    assert response.status_code == 401


# Who may import


def test_rater_cannot_import_pairs(project, make_rater, api):
    response = api(make_rater(project)).post(URL, _items(1), format="json")
    assert response.status_code == 403
    assert not Pair.objects.exists()


def test_rater_cannot_list_pairs(project, make_rater, make_pairs, api):
    make_pairs(project, 2)
    response = api(make_rater(project)).get(URL)
    assert response.status_code == 403


def test_import_into_an_unknown_project_is_404(staff, db):
    response = staff.post("/api/v1/projects/nope/pairs/", _items(1), format="json")
    assert response.status_code == 404
    assert not Pair.objects.exists()


# Listing


def test_pairs_list_pages_with_a_cursor_and_shows_judgment_counts(project, staff, make_pairs, make_rater):
    make_pairs(project, 5)
    rater = make_rater(project)
    assignment = services.assignment_next(project=project, user=rater).assignment
    services.judgment_record(assignment_id=assignment.pk, user=rater, choice="left")

    first = staff.get(URL, {"page_size": 3})
    assert first.status_code == 200
    page = first.json()
    assert [p["external_id"] for p in page["results"]] == ["p0", "p1", "p2"]
    assert page["previous"] is None and page["next"]
    second = staff.get(page["next"]).json()
    assert [p["external_id"] for p in second["results"]] == ["p3", "p4"]
    assert second["next"] is None

    counts = {p["id"]: p["judgment_count"] for p in page["results"] + second["results"]}
    assert counts[assignment.pair_id] == 1
    assert sum(counts.values()) == 1
    row = page["results"][0]
    assert set(row) == {
        "id",
        "external_id",
        "prompt",
        "messages",
        "response_a",
        "response_b",
        "model_a",
        "model_b",
        "metadata",
        "gold",
        "judgment_count",
        "created_at",
    }


def test_pairs_list_takes_a_fixed_number_of_queries(project, staff, make_pairs, django_assert_num_queries):
    make_pairs(project, 3)
    # Token and user, the project, the page: the same for 3 pairs as for 60.
    with django_assert_num_queries(3):
        assert len(staff.get(URL).json()["results"]) == 3
    make_pairs(project, 57, prefix="q")
    with django_assert_num_queries(3):
        assert len(staff.get(URL).json()["results"]) == 60


def test_pairs_list_is_per_project(make_project, make_pairs, staff):
    make_pairs(make_project("imports"), 2)
    make_pairs(make_project("elsewhere"), 3)
    assert len(staff.get(URL).json()["results"]) == 2


def test_json_lines_item_errors_name_the_line_blank_lines_counted(project, staff):
    """The services count items; the answer names each bad item's line too, as the commands do (a blank
    line is no item, so index and line part ways)."""
    items = _items(3)
    items[2]["response_b"] = items[2]["response_a"]
    body = _jsonl(items[:1]) + "\n\n" + _jsonl(items[1:])
    response = staff.post(URL, body, content_type="application/x-ndjson")
    assert response.status_code == 400
    assert [(e["index"], e["line"], e["field"]) for e in response.json()["errors"]] == [(2, 5, "response_b")]
    assert not Pair.objects.exists()
    # A JSON list has no lines: its errors name the index alone.
    listed = staff.post(URL, json.dumps(items), content_type="application/json").json()["errors"]
    assert [(e["index"], "line" in e) for e in listed] == [(2, False)]


@pytest.mark.parametrize("cursor", ["AAAA", "", "cD0=", "cD14", "bz0w"])
def test_a_cursor_no_link_gave_is_refused_not_read_as_the_first_page(project, staff, make_pairs, cursor):
    make_pairs(project, 5)
    first = staff.get(URL, {"page_size": 2}).json()
    # The links DRF wrote go on working, back and forth.
    second = staff.get(first["next"]).json()
    assert [p["external_id"] for p in staff.get(second["previous"]).json()["results"]] == ["p0", "p1"]
    response = staff.get(URL, {"page_size": 2, "cursor": cursor})
    assert response.status_code == 404 and response.json()["code"] == "not_found"
