"""Judgment import and the exports: all or nothing, rows that match the database, pseudonyms, filters,
streaming with a fixed number of queries, and files that the trainer and TRL's loaders read as they are."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import selectors, services
from annotation.models import Judgment, Pair, Rater
from annotation.selectors import exports
from rm_training.data import read_comparisons

IMPORT = "/api/v1/projects/ex/judgments/import/"
EXPORT = "/api/v1/projects/ex/export/"


@pytest.fixture
def project(make_project, make_pairs):
    project = make_project("ex", strength_levels=3, judgments_per_pair=3)
    make_pairs(project, 6)
    return project


@pytest.fixture
def staff(admin_user, api):
    return api(admin_user)


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def jsonl_rows(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body(response).decode().splitlines()]


def judge(project, user, choice: str, **extra: Any) -> Judgment:
    served = services.assignment_next(project=project, user=user)
    assert served is not None
    return services.judgment_record(assignment_id=served.assignment.pk, user=user, choice=choice, **extra)


# Judgment import


def test_ten_thousand_judgments_in_one_request(make_project, make_pairs, staff):
    project = make_project("big", judgments_per_pair=3)
    make_pairs(project, 2500)
    items = [
        {"pair": f"p{i % 2500}", "rater": f"ann-{i // 2500}", "choice": ("a", "b", "tie")[i % 3]}
        for i in range(10_000)
    ]
    response = staff.post("/api/v1/projects/big/judgments/import/", items, format="json")
    assert response.status_code == 201, response.content[:500]
    assert response.json() == {"created": 10_000, "raters_created": 4}
    assert Judgment.objects.filter(project=project).count() == 10_000
    # Imported judgments count toward the quota (and may exceed it: 4 on each pair here).
    assert set(Pair.objects.filter(project=project).values_list("judgment_count", flat=True)) == {4}


def test_one_bad_item_among_a_thousand_stores_nothing_and_names_its_index(project, staff):
    items = [{"pair": f"p{i % 6}", "rater": f"ann-{i}", "choice": "a"} for i in range(1000)]
    items[637]["choice"] = "left"
    response = staff.post(IMPORT, items, format="json")
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(637, "choice")]
    assert not Judgment.objects.exists() and not Rater.objects.exists()


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"pair": "nope", "rater": "r", "choice": "a"}, "pair"),
        ({"pair": "p0", "rater": "", "choice": "a"}, "rater"),
        ({"pair": "p0", "rater": "r", "choice": "a", "strength": 4}, "strength"),
        ({"pair": "p0", "rater": "r", "choice": "tie", "strength": 1}, "strength"),
        ({"pair": "p0", "rater": "r", "choice": "a", "shown_left": "left"}, "shown_left"),
        ({"pair": "p0", "rater": "r", "choice": "a", "created_at": "2026-11-30 10:00"}, "created_at"),
        ({"pair": "p0", "rater": "r", "choice": "a", "created_at": "yesterday"}, "created_at"),
        ({"pair": "p0", "rater": "r", "choice": "a", "rationale": "x\u0000"}, "rationale"),
        ({"pair": "p0", "rater": "r", "choice": "a", "judge": "typo"}, "judge"),
        ({"pair": 7, "rater": "r", "choice": "a"}, "pair"),
    ],
)
def test_a_bad_judgment_item_is_refused_with_its_field(project, staff, item, field):
    response = staff.post(IMPORT, [{"pair": "p1", "rater": "ok", "choice": "b"}, item], format="json")
    assert response.status_code == 400, response.content
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, field)]
    assert not Judgment.objects.exists()


def test_a_repeated_pair_and_rater_is_refused_in_a_request_and_across_requests(project, staff):
    twice = [{"pair": "p0", "rater": "r1", "choice": "a"}, {"pair": "p0", "rater": "r1", "choice": "b"}]
    response = staff.post(IMPORT, twice, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["index"] == 1
    assert staff.post(IMPORT, twice[:1], format="json").status_code == 201
    again = staff.post(IMPORT, [{"pair": "p1", "rater": "r1", "choice": "a"}, twice[1]], format="json")
    assert again.status_code == 400 and again.json()["errors"][0]["index"] == 1
    assert Judgment.objects.count() == 1


def test_imported_judgments_fill_the_quota_so_the_engine_never_serves_the_pair(project, staff, make_rater):
    items = [{"pair": "p0", "rater": f"r{i}", "choice": "a"} for i in range(3)]
    assert staff.post(IMPORT, items, format="json").status_code == 201
    user = make_rater(project)
    served = {services.assignment_next(project=project, user=user).assignment.pair.external_id}
    for _ in range(5):
        assignment = services.assignment_next(project=project, user=user).assignment
        services.judgment_record(assignment_id=assignment.pk, user=user, choice="left", strength=1)
        nxt = services.assignment_next(project=project, user=user)
        if nxt is None:
            break
        served.add(nxt.assignment.pair.external_id)
    assert "p0" not in served


def test_imported_raters_cannot_log_in_and_are_exported_by_pseudonym(project, staff, api, client):
    staff.post(IMPORT, [{"pair": "p0", "rater": "annotator-3", "choice": "a"}], format="json")
    rater = Rater.objects.get(source_id="annotator-3")
    assert rater.user is None
    for username in ("annotator-3", rater.pseudonym):
        response = api().post("/api/v1/auth/token/", {"username": username, "password": ""}, format="json")
        assert response.status_code == 400
    (row,) = jsonl_rows(staff.get(EXPORT + "judgments.jsonl"))
    assert row["rater"] == rater.pseudonym and "annotator-3" not in json.dumps(row)


# Exports


@pytest.fixture
def judged(project, make_rater):
    """Three raters judge pairs p0..p2 through the engine; rationales that CSV must quote."""
    users = [make_rater(project, username=f"rater-{i}") for i in range(3)]
    for user in users:
        for choice in ("left", "right", "tie"):
            extra = {} if choice == "tie" else {"strength": 2}
            judge(project, user, choice, rationale=f'He said "no", then,\nleft {user.username}', **extra)
    return users


def test_judgment_rows_match_the_database(project, judged, staff):
    response = staff.get(EXPORT + "judgments.jsonl")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == 'attachment; filename="ex-judgments.jsonl"'
    rows = jsonl_rows(response)
    judgments = Judgment.objects.select_related("pair", "rater", "assignment").order_by("id")
    assert [r["judgment_id"] for r in rows] == [j.pk for j in judgments]
    for row, judgment in zip(rows, judgments, strict=True):
        assignment = judgment.assignment
        assert row["choice"] == judgment.choice
        assert row["shown_left"] == assignment.shown_left
        if judgment.choice != "tie":  # a/b is the side shown, mapped back
            shown = (
                assignment.shown_left if judgment.choice == assignment.shown_left else assignment.shown_right
            )
            assert row["choice"] == shown
        assert (row["strength"], row["rationale"]) == (judgment.strength, judgment.rationale)
        assert (row["prompt"], row["response_a"], row["response_b"]) == (
            judgment.pair.prompt,
            judgment.pair.response_a,
            judgment.pair.response_b,
        )
        assert row["time_on_task_ms"] == judgment.time_on_task_ms
        assert row["created_at"] == judgment.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # in UTC
        assert row["rater"] == judgment.rater.pseudonym != judgment.rater.user.username


def test_the_csv_has_a_header_and_quotes_newlines_quotes_and_commas(project, judged, staff):
    response = staff.get(EXPORT + "judgments.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="ex-judgments.csv"'
    rows = list(csv.DictReader(io.StringIO(body(response).decode("utf-8"))))
    as_json = jsonl_rows(staff.get(EXPORT + "judgments.jsonl"))
    assert len(rows) == len(as_json) == 9
    for row, expected in zip(rows, as_json, strict=True):
        assert row["rationale"] == expected["rationale"] and "\n" in row["rationale"]
        assert row["strength"] == ("" if expected["strength"] is None else str(expected["strength"]))


# OWASP's CSV Injection cases: each would run as a formula in a spreadsheet.
FORMULAS = ["=1+1", "+1+1", "-1+1", "@SUM(1+1)", "\t=1+1", "\r=1+1", '=HYPERLINK("http://x.example","y")']


def test_the_csv_keeps_a_spreadsheet_from_running_formulas_unless_raw_is_asked(
    make_project, make_rater, staff
):
    project = make_project("formulas")
    services.pairs_import(
        project=project,
        items=[
            {"external_id": f"f{i}", "prompt": text, "response_a": text, "response_b": "plain - text"}
            for i, text in enumerate(FORMULAS)
        ],
    )
    rater = make_rater(project)
    for text in FORMULAS:
        judge(project, rater, "tie", rationale=text)
    url = "/api/v1/projects/formulas/export/"

    def cells(query: str = "") -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(body(staff.get(url + "judgments.csv" + query)).decode())))

    safe = cells()
    assert sorted(row["rationale"] for row in safe) == sorted("'" + text for text in FORMULAS)
    assert sorted(row["prompt"] for row in safe) == sorted("'" + text for text in FORMULAS)
    assert {row["response_b"] for row in safe} == {"plain - text"}  # a sign inside a cell runs nothing
    assert sorted(row["rationale"] for row in cells("?raw=true")) == sorted(FORMULAS)
    lines = jsonl_rows(staff.get(url + "judgments.jsonl"))
    assert sorted(row["rationale"] for row in lines) == sorted(FORMULAS)  # JSON is written as it is
    assert staff.get(url + "judgments.csv?raw=maybe").status_code == 400


def test_export_comparisons_neutralises_formulas_unless_raw_csv(make_project, make_rater, tmp_path):
    project = make_project("cmdformulas")
    services.pairs_import(
        project=project, items=[{"external_id": "f", "prompt": "=1+1", "response_a": "a", "response_b": "b"}]
    )
    judge(project, make_rater(project), "left")
    for flags, expected in (([], "'=1+1"), (["--raw-csv"], "=1+1")):
        path = tmp_path / "out.csv"
        command = ["cmdformulas", "--kind", "judgments", "--format", "csv", "-o", str(path), *flags]
        call_command("export_comparisons", *command, stdout=io.StringIO())
        assert next(csv.DictReader(io.StringIO(path.read_text())))["prompt"] == expected


def test_the_database_and_python_write_the_same_jsonl_bytes(project, judged, staff):
    """judgment_lines has PostgreSQL write each line; as_jsonl is the path elsewhere: same bytes."""
    filters = selectors.ExportFilter()
    from_database = b"".join(selectors.judgment_lines(project=project, filters=filters))
    from_python = b"".join(selectors.as_jsonl(selectors.judgment_rows(project=project, filters=filters)))
    assert from_database == from_python
    assert from_database.count(b"\n") == 9


def test_the_pseudonym_is_stable_across_exports(project, judged, staff):
    first = [r["rater"] for r in jsonl_rows(staff.get(EXPORT + "judgments.jsonl"))]
    second = [r["rater"] for r in jsonl_rows(staff.get(EXPORT + "judgments.jsonl"))]
    assert first == second and len(set(first)) == 3
    assert not {u.username for u in judged} & set(first)


def test_since_until_and_min_votes_filter(project, judged, staff):
    late = Judgment.objects.order_by("id").last()
    Judgment.objects.filter(pk=late.pk).update(created_at=timezone.now() + timedelta(days=2))
    cut = (timezone.now() + timedelta(days=1)).isoformat()
    before = jsonl_rows(staff.get(EXPORT + "judgments.jsonl", {"until": cut}))
    after = jsonl_rows(staff.get(EXPORT + "judgments.jsonl", {"since": cut}))
    assert [r["judgment_id"] for r in after] == [late.pk]
    assert len(before) == 8 and late.pk not in {r["judgment_id"] for r in before}
    # p0..p2 have 3 judgments each; with the late one cut off, its pair has 2 in the window.
    full = jsonl_rows(staff.get(EXPORT + "judgments.jsonl", {"until": cut, "min_votes": 3}))
    assert len(full) == 6 and late.pair_id not in {r["pair_id"] for r in full}
    bad = staff.get(EXPORT + "judgments.jsonl", {"min_votes": 0})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "min_votes"
    assert staff.get(EXPORT + "judgments.jsonl", {"since": cut, "until": cut}).status_code == 400


def test_preferences_have_strict_majorities_only_with_votes_agreement_and_strength(project, staff):
    items = [
        *({"pair": "p0", "rater": r, "choice": "b", "strength": s} for r, s in (("x", 1), ("y", 2))),
        {"pair": "p0", "rater": "z", "choice": "a", "strength": 3},
        {"pair": "p1", "rater": "x", "choice": "a"},
        {"pair": "p1", "rater": "y", "choice": "tie"},
        {"pair": "p2", "rater": "x", "choice": "a"},
        {"pair": "p2", "rater": "y", "choice": "tie"},
        {"pair": "p2", "rater": "z", "choice": "tie"},
    ]
    staff.post(IMPORT, items, format="json")
    response = staff.get(EXPORT + "preferences.jsonl")
    assert response["Content-Disposition"] == 'attachment; filename="ex-preferences.jsonl"'
    (row,) = jsonl_rows(response)
    pair = Pair.objects.get(external_id="p0")
    assert row == {
        "prompt": pair.prompt,
        "chosen": pair.response_b,
        "rejected": pair.response_a,
        "pair_id": pair.pk,
        "external_id": "p0",
        "votes": {"a": 1, "b": 2, "tie": 0},
        "agreement": 0.667,
        "strength": 1.5,
    }
    (chat,) = jsonl_rows(staff.get(EXPORT + "preferences.jsonl", {"format": "conversational"}))
    assert chat["prompt"] == [{"role": "user", "content": pair.prompt}]
    assert chat["chosen"] == [{"role": "assistant", "content": pair.response_b}]
    assert chat["rejected"] == [{"role": "assistant", "content": pair.response_a}]
    assert staff.get(EXPORT + "preferences.jsonl", {"format": "chat"}).status_code == 400


def test_the_trainer_reads_the_same_pairs_from_both_exports(project, judged, staff, tmp_path, make_rater):
    more = [make_rater(project) for _ in range(2)]
    for user in more:
        for choice in ("left", "left", "right"):
            judge(project, user, choice, strength=1)
    (tmp_path / "j.jsonl").write_bytes(body(staff.get(EXPORT + "judgments.jsonl")))
    (tmp_path / "p.jsonl").write_bytes(body(staff.get(EXPORT + "preferences.jsonl")))
    from_judgments = read_comparisons(tmp_path / "j.jsonl")
    from_preferences = read_comparisons(tmp_path / "p.jsonl")
    assert from_preferences  # something to compare
    assert from_judgments == from_preferences


def test_the_preferences_file_loads_with_datasets_in_the_columns_trl_reads(project, judged, staff, tmp_path):
    datasets = pytest.importorskip("datasets")
    staff.post(
        IMPORT,
        [{"pair": f"p{i}", "rater": f"x{j}", "choice": "a"} for i in (4, 5) for j in range(2)],
        format="json",
    )
    for form in ("standard", "conversational"):
        path = tmp_path / f"{form}.jsonl"
        path.write_bytes(body(staff.get(EXPORT + "preferences.jsonl", {"format": form})))
        loaded = datasets.load_dataset("json", data_files=str(path), split="train")
        assert {"prompt", "chosen", "rejected"} <= set(loaded.column_names)
        # TRL's RewardTrainer reads a "margin" column as a logit margin and fails on nulls.
        assert "margin" not in loaded.column_names
        assert loaded.num_rows == len(path.read_text().splitlines()) >= 2
        if form == "conversational":
            assert loaded[0]["chosen"][0]["role"] == "assistant"


def test_the_paginated_list_gives_the_export_rows(project, judged, staff):
    exported = jsonl_rows(staff.get(EXPORT + "judgments.jsonl"))
    page = staff.get("/api/v1/projects/ex/judgments/", {"page_size": 4}).json()
    rows = page["results"]
    while page["next"]:
        page = staff.get(page["next"]).json()
        rows += page["results"]
    assert rows == exported


@pytest.mark.parametrize(
    "path", ["export/judgments.jsonl", "export/judgments.csv", "export/preferences.jsonl", "judgments/"]
)
def test_exports_are_staff_only(project, judged, api, path):
    url = f"/api/v1/projects/ex/{path}"
    assert api().get(url).status_code == 401
    forbidden = api(judged[0]).get(url)
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "permission_denied"
    assert api(judged[0]).post(IMPORT, [], format="json").status_code == 403


def test_export_queries_do_not_grow_with_rows(project, staff):
    def queries(path: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = staff.get(EXPORT + path)
            body(response)
        return len(captured.captured_queries)

    def add(count: int, offset: int) -> None:
        items = [
            {"pair": f"p{i % 6}", "rater": f"r{offset + i}", "choice": "ab"[i % 2]} for i in range(count)
        ]
        assert staff.post(IMPORT, items, format="json").status_code == 201

    add(12, 0)
    few = {path: queries(path) for path in ("judgments.jsonl", "judgments.csv", "preferences.jsonl")}
    add(3000, 100)  # more rows than one chunk (CHUNK_ROWS, 2000)
    many = {path: queries(path) for path in few}
    # token and user, project, then: the judgments' last id and one keyset chunk per CHUNK_ROWS judgments
    # (judgments.jsonl's COPYs, one per COPY_CHUNK_ROWS, run on the driver's own cursor, which Django
    # does not count); the preferences in one statement.
    assert few == {"judgments.jsonl": 3, "judgments.csv": 4, "preferences.jsonl": 3}
    assert many == {"judgments.jsonl": 3, "judgments.csv": 5, "preferences.jsonl": 3}


@pytest.mark.parametrize("chunk", [1, 3, 4])
def test_keyset_chunks_give_the_same_bytes_as_one_chunk(project, judged, staff, monkeypatch, chunk):
    """Chunks that end inside the rows, on their last row, and one row each: the same bytes, in order."""
    cut = (timezone.now() + timedelta(days=1)).isoformat()
    queries = [{}, {"min_votes": 3}, {"until": cut}]
    paths = ("judgments.jsonl", "judgments.csv")
    whole = {(path, i): body(staff.get(EXPORT + path, q)) for path in paths for i, q in enumerate(queries)}
    monkeypatch.setattr(exports, "FIRST_CHUNK_ROWS", 1)  # chunks of 1, 2, 4, ... up to `chunk`
    monkeypatch.setattr(exports, "COPY_CHUNK_ROWS", chunk)
    monkeypatch.setattr(exports, "CHUNK_ROWS", chunk)
    chunked = {(path, i): body(staff.get(EXPORT + path, q)) for path in paths for i, q in enumerate(queries)}
    assert chunked == whole
    assert whole["judgments.jsonl", 0].count(b"\n") == 9


def test_judgments_made_during_an_export_do_not_join_it(project, judged, monkeypatch, make_rater):
    monkeypatch.setattr(exports, "CHUNK_ROWS", 2)
    rows = selectors.judgment_rows(project=project, filters=selectors.ExportFilter())
    first = next(rows)  # the first chunk is read; the rest not yet
    late = judge(project, make_rater(project), "tie")
    ids = [first["judgment_id"], *(row["judgment_id"] for row in rows)]
    assert len(ids) == 9 and late.pk not in ids


# Commands


def test_export_comparisons_writes_what_the_endpoint_streams(project, judged, staff, tmp_path):
    for kind, form, url in (
        ("judgments", "jsonl", "judgments.jsonl"),
        ("judgments", "csv", "judgments.csv"),
        ("preferences", "jsonl", "preferences.jsonl"),
    ):
        path = tmp_path / f"{kind}.{form}"
        out = io.StringIO()
        call_command(
            "export_comparisons", "ex", "--kind", kind, "--format", form, "-o", str(path), stdout=out
        )
        expected = body(staff.get(EXPORT + url))
        assert path.read_bytes() == expected, kind
        # The count is right with no terminal (the progress bar is off then and counts nothing).
        rows = 9 if kind == "judgments" else expected.count(b"\n")
        assert f"ex: {rows} {kind} rows written to {path}" in out.getvalue()
        assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_export_comparisons_writes_into_a_symlink_or_a_pipe_without_replacing_it(project, judged, tmp_path):
    real = tmp_path / "real.jsonl"
    real.write_text("old")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    call_command("export_comparisons", "ex", "--kind", "judgments", "-o", str(link), stdout=io.StringIO())
    assert link.is_symlink() and real.read_bytes().count(b"\n") == 9


def test_export_comparisons_refuses_bad_arguments_in_a_line(project, tmp_path):
    for args, message in (
        (["nope", "--kind", "judgments"], "No project 'nope'"),
        (["ex", "--kind", "preferences", "--format", "csv"], "--format csv is for --kind judgments"),
        (["ex", "--kind", "judgments", "--min-votes", "0"], "--min-votes: .*greater than or equal to 1"),
        (
            ["ex", "--kind", "judgments", "--min-votes", "9" * 25],
            "--min-votes: .*less than or equal to 10000",
        ),
        (["ex", "--kind", "judgments", "--since", "2026-01-01T00:00:00"], "--since: Add a time zone"),
        (
            [
                "ex",
                "--kind",
                "judgments",
                "--since",
                "2027-01-01T00:00:00Z",
                "--until",
                "2026-01-01T00:00:00Z",
            ],
            "--until: Must be later than since",
        ),
    ):
        with pytest.raises(CommandError, match=message):
            call_command("export_comparisons", *args, "-o", str(tmp_path / "x.jsonl"))
    with pytest.raises(CommandError, match="is a folder"):
        call_command("export_comparisons", "ex", "--kind", "judgments", "-o", str(tmp_path))
    assert not (tmp_path / "x.jsonl").exists()


def test_import_judgments_command_imports_and_names_bad_lines(project, tmp_path):
    good = [{"pair": "p0", "rater": "a1", "choice": "a"}, {"pair": "p1", "rater": "a1", "choice": "tie"}]
    path = tmp_path / "j.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in good) + "\n")
    out = io.StringIO()
    call_command("import_judgments", "ex", str(path), stdout=out, stderr=io.StringIO())
    assert "2 judgments created, 1 new imported raters" in out.getvalue()
    path.write_text(
        json.dumps({"pair": "p2", "rater": "a1", "choice": "a"}) + "\n\n" + json.dumps(good[0]) + "\n"
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was stored"):
        call_command("import_judgments", "ex", str(path), stdout=io.StringIO(), stderr=err)
    assert "line 3: rater:" in err.getvalue()
    assert Judgment.objects.count() == 2


# The rest of the error contract


def test_token_requests_are_throttled_with_retry_after(api, make_user):
    make_user("thrower", password="correct-horse-9")
    client = api()
    answers = [
        client.post("/api/v1/auth/token/", {"username": "thrower", "password": f"guess-{i}"}, format="json")
        for i in range(25)
    ]
    statuses = [a.status_code for a in answers]
    limit = settings.PAIRWISE_LOGIN_FAILURES_PER_USER
    assert statuses[:limit] == [400] * limit
    assert statuses[limit:] == [429] * (25 - limit)
    assert answers[-1].json()["code"] == "throttled" and int(answers[-1]["Retry-After"]) > 0
    # Throttled means refused, even with the right password.
    right = client.post(
        "/api/v1/auth/token/", {"username": "thrower", "password": "correct-horse-9"}, format="json"
    )
    assert right.status_code == 429


def test_the_api_docs_need_nothing_from_the_network(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "https://" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page


def test_an_unknown_export_parameter_is_refused(project, staff):
    for path in ("export/judgments.jsonl", "export/preferences.jsonl", "judgments/"):
        response = staff.get(f"/api/v1/projects/ex/{path}", {"min_vote": 3})
        assert response.status_code == 400, path
        assert response.json()["errors"][0]["field"] == "min_vote"
    assert staff.get("/api/v1/projects/ex/judgments/", {"page_size": 5}).status_code == 200


def test_judgments_import_takes_the_three_body_forms(project, staff):
    items = [{"pair": "p0", "rater": f"r{i}", "choice": "a"} for i in range(3)]
    assert staff.post(IMPORT, {"judgments": items[:1]}, format="json").status_code == 201
    jsonl = "\n".join(json.dumps(item) for item in items[1:])
    assert staff.post(IMPORT, jsonl, content_type="application/x-ndjson").status_code == 201
    wrapped_wrongly = staff.post(IMPORT, {"pairs": items}, format="json")
    assert wrapped_wrongly.status_code == 400 and '{"judgments": [...]}' in wrapped_wrongly.json()["detail"]
    assert Judgment.objects.count() == 3


def test_the_token_throttle_cannot_be_escaped_with_x_forwarded_for(api, make_user):
    make_user("spoofer", password="correct-horse-9")
    client = api()
    statuses = [
        client.post(
            "/api/v1/auth/token/",
            {"username": "spoofer", "password": "wrong"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"10.0.0.{i}",
        ).status_code
        for i in range(25)
    ]
    assert statuses[20:] == [429] * 5


def test_an_import_time_outside_what_the_database_holds_is_refused(project, staff):
    for created_at in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        item = {"pair": "p0", "rater": "r", "choice": "a", "created_at": created_at}
        response = staff.post(IMPORT, [item], format="json")
        assert response.status_code == 400, created_at
        assert response.json()["errors"][0]["field"] == "created_at"
    assert not Judgment.objects.exists()
    fine = {"pair": "p0", "rater": "r", "choice": "a", "created_at": "2026-01-01T10:00:00+02:00"}
    assert staff.post(IMPORT, [fine], format="json").status_code == 201
    assert Judgment.objects.get().created_at.isoformat() == "2026-01-01T08:00:00+00:00"


def test_export_filters_need_a_time_zone(project, judged, staff):
    for since in ("2026-01-01", "2026-01-01T00:00:00"):
        response = staff.get(EXPORT + "judgments.jsonl", {"since": since})
        assert response.status_code == 400 and "time zone" in response.json()["errors"][0]["message"]
    assert staff.get(EXPORT + "judgments.jsonl", {"since": "2026-01-01T00:00:00+01:00"}).status_code == 200


def test_the_files_take_no_paging_parameters(project, staff):
    assert staff.get(EXPORT + "judgments.jsonl", {"page_size": 5}).status_code == 400


def test_every_bad_judgment_item_is_named_in_one_answer(project, staff):
    staff.post(IMPORT, [{"pair": "p0", "rater": "r1", "choice": "a"}], format="json")
    items = [
        {"pair": "p1", "rater": "r2", "choice": "a"},
        {"pair": "nope", "rater": "r2", "choice": "a"},
        {"pair": "p0", "rater": "r1", "choice": "b"},
        {"pair": "p2", "rater": "r2", "choice": "left"},
    ]
    response = staff.post(IMPORT, items, format="json")
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [
        (1, "pair"),
        (2, "rater"),
        (3, "choice"),
    ]
    assert response.json()["detail"] == "3 of 4 items are invalid; nothing was stored."


# Active selection's arm and propensity


def test_every_judgments_export_carries_each_judgments_arm_and_propensity(project, judged, staff, make_rater):
    """Planted through the ORM as the engine writes them: each format gives each judgment its assignment's
    arm and propensity; a default-order judgment and an imported one (no assignment) give nulls."""
    from annotation.models import Arm, Assignment

    planted = {}
    for index, assignment in enumerate(Assignment.objects.order_by("id")):
        if index % 3 == 2:
            continue  # default order: arm and propensity stay null
        arm, propensity = (Arm.UNCERTAINTY, 0.85) if index % 3 == 0 else (Arm.RANDOM, 1 / 30)
        Assignment.objects.filter(pk=assignment.pk).update(arm=arm, propensity=propensity)
        planted[assignment.judgment.pk] = (arm.value, propensity)
    imported = staff.post(IMPORT, [{"pair": "p5", "rater": "elsewhere", "choice": "a"}], format="json")
    assert imported.status_code == 201
    expected = {
        j.pk: planted.get(j.pk, (None, None)) for j in Judgment.objects.filter(project=project).order_by("id")
    }
    assert len(expected) == 10 and 0 < len(planted) < 9

    rows = jsonl_rows(staff.get(EXPORT + "judgments.jsonl"))
    assert {r["judgment_id"]: (r["arm"], r["propensity"]) for r in rows} == expected
    assert list(rows[0])[-2:] == ["arm", "propensity"]
    listed = staff.get("/api/v1/projects/ex/judgments/", {"page_size": 1000}).json()["results"]
    assert listed == rows
    table = list(csv.DictReader(io.StringIO(body(staff.get(EXPORT + "judgments.csv")).decode())))
    as_text = {
        pk: ("" if arm is None else arm, "" if p is None else repr(p)) for pk, (arm, p) in expected.items()
    }
    assert {int(r["judgment_id"]): (r["arm"], r["propensity"]) for r in table} == as_text
    # PostgreSQL's row_to_json writes the floats as Python does (1/30 to its last digit).
    filters = selectors.ExportFilter()
    assert b"".join(selectors.judgment_lines(project=project, filters=filters)) == b"".join(
        selectors.as_jsonl(selectors.judgment_rows(project=project, filters=filters))
    )


def test_an_imported_rationale_is_held_to_a_raters_limit(project, staff):
    from annotation.models import MAX_RATIONALE

    for rationale in ("x" * (MAX_RATIONALE + 1), 123):
        item = {"pair": "p0", "rater": "r", "choice": "a", "rationale": rationale}
        response = staff.post(IMPORT, [item], format="json")
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "rationale"
    assert not Judgment.objects.exists()
    item = {"pair": "p0", "rater": "r", "choice": "a", "rationale": "x" * MAX_RATIONALE}
    assert staff.post(IMPORT, [item], format="json").status_code == 201
