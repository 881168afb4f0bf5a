"""Inputs real data and bug reports bring: text the database cannot hold, numbers past a column's range,
bodies that are not UTF-8 or not JSON, empty responses. Each answers 400 in the per-item shape with nothing
stored, on every path it reaches (the three body forms, the command), never a 500."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from annotation import services
from annotation.models import MAX_JUDGMENTS_PER_PAIR, MAX_LEASE_SECONDS, Assignment, Judgment, Pair, Project
from web.errors import Invalid, NotFound

URL = "/api/v1/projects/hostile/pairs/"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(make_project) -> Project:
    return make_project("hostile")


@pytest.fixture
def staff(admin_user, api):
    return api(admin_user)


def good(i: int) -> dict[str, Any]:
    return {"external_id": f"e{i}", "prompt": f"Prompt {i}", "response_a": f"A {i}", "response_b": f"B {i}"}


# Raw JSON texts of one bad item: each must be caught whichever body form carries it.
def _with_metadata(metadata: str) -> str:
    return '{"prompt": "p", "response_a": "a", "response_b": "b", "metadata": ' + metadata + "}"


BAD_ITEMS = {
    "NUL in a response": '{"prompt": "p", "response_a": "x\\u0000y", "response_b": "b"}',
    "NUL in a metadata value": _with_metadata('{"n": "\\u0000"}'),
    "NUL in a metadata key": _with_metadata('{"\\u0000": 1}'),
    "lone surrogate in the prompt": '{"prompt": "\\ud83d", "response_a": "a", "response_b": "b"}',
    "lone surrogate in a nested key": _with_metadata('{"x": [{"\\udc00": 1}]}'),
    "NaN": _with_metadata('{"score": NaN}'),
    "Infinity": _with_metadata('{"score": -Infinity}'),
    "a number past a float": _with_metadata('{"score": 1e999}'),
    "deep nesting": _with_metadata('{"x": ' * 80 + "1" + "}" * 80),
}


def bodies(bad: str) -> list[tuple[str, str, int]]:
    """(content type, body, index of the bad item) for the three body forms."""
    first, last = json.dumps(good(0)), json.dumps(good(2))
    return [
        ("application/json", f"[{first}, {bad}, {last}]", 1),
        ("application/json", f'{{"pairs": [{first}, {bad}, {last}]}}', 1),
        ("application/x-ndjson", f"{first}\n{bad}\n{last}\n", 1),
        ("application/jsonl", f"{first}\n\n{bad}\n", 1),
    ]


@pytest.mark.parametrize("case", sorted(BAD_ITEMS))
def test_unstorable_values_are_400_per_item_in_every_body_form(project, staff, case):
    for content_type, body, index in bodies(BAD_ITEMS[case]):
        response = staff.post(URL, body.encode("utf-8", "surrogatepass"), content_type=content_type)
        assert response.status_code == 400, (case, content_type, response.content[:300])
        payload = response.json()
        assert payload["code"] in ("invalid", "parse_error")
        if payload["errors"][0].get("index") is not None:
            assert payload["errors"][0]["index"] == index, (case, content_type, payload)
        assert not Pair.objects.exists()


def test_a_body_that_is_not_utf8_is_400_and_names_the_line(project, staff):
    body = (
        json.dumps(good(0)) + "\n"
    ).encode() + b'{"prompt": "caf\xe9", "response_a": "a", "response_b": "b"}\n'
    response = staff.post(URL, body, content_type="application/x-ndjson")
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert (error["index"], error["line"]) == (1, 2) and "UTF-8" in error["message"]
    response = staff.post(URL, b"[\xff]", content_type="application/json")
    assert response.status_code == 400 and "UTF-8" in response.json()["errors"][0]["message"]
    assert not Pair.objects.exists()


def test_a_utf8_byte_order_mark_is_accepted(project, staff):
    jsonl_body = "\ufeff" + "".join(json.dumps(good(i)) + "\n" for i in range(2))
    assert staff.post(URL, jsonl_body.encode(), content_type="application/x-ndjson").status_code == 201
    json_body = "\ufeff" + json.dumps([good(5)])
    assert staff.post(URL, json_body.encode(), content_type="application/json").status_code == 201
    assert Pair.objects.count() == 3


def test_unstorable_text_is_refused_by_the_service_too(project):
    """The service is the rule's home for callers that are not the API (admin, scripts)."""
    with pytest.raises(Invalid) as refused:
        services.pairs_import(
            project=project, items=[{"prompt": "p\x00", "response_a": "a", "response_b": "b"}]
        )
    assert refused.value.errors[0]["field"] == "prompt"
    assert not Pair.objects.exists()


# Empty responses


def test_an_empty_response_is_a_pair_but_a_missing_or_non_string_one_is_not(project, staff):
    empty = [{"prompt": "p", "response_a": "", "response_b": "Something."}]
    assert staff.post(URL, empty, format="json").status_code == 201
    assert Pair.objects.get().response_a == ""
    for item, field in [
        ({"prompt": "q", "response_b": "b"}, "response_a"),
        ({"prompt": "q", "response_a": None, "response_b": "b"}, "response_a"),
        ({"prompt": "q", "response_a": 5, "response_b": "b"}, "response_a"),
        ({"prompt": "q", "response_a": "", "response_b": ""}, "response_b"),
        ({"prompt": "q", "response_a": "same", "response_b": "same"}, "response_b"),
        ({"prompt": "   ", "response_a": "a", "response_b": "b"}, "prompt"),
    ]:
        response = staff.post(URL, [item], format="json")
        assert response.status_code == 400, item
        assert [e["field"] for e in response.json()["errors"]] == [field], item
    assert Pair.objects.count() == 1


def test_a_pair_with_an_empty_response_is_rated_like_any_other(project, make_rater, api):
    services.pairs_import(project=project, items=[{"prompt": "p", "response_a": "", "response_b": "b"}])
    client = api(make_rater(project))
    served = client.post("/api/v1/projects/hostile/next/").json()
    assert "" in (served["left"], served["right"])
    response = client.post(
        f"/api/v1/assignments/{served['assignment']}/judgment/", {"choice": "left"}, format="json"
    )
    assert response.status_code == 201


# Numbers against their columns, settings against what they drive


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lease_seconds", 2**63 - 1),
        ("lease_seconds", MAX_LEASE_SECONDS + 1),
        ("lease_seconds", 9),
        ("judgments_per_pair", 2000),
        ("judgments_per_pair", 32767),
        ("judgments_per_pair", MAX_JUDGMENTS_PER_PAIR + 1),
        ("judgments_per_pair", 0),
        ("strength_levels", 11),
        ("strength_levels", 2**40),
        ("gold_fraction", 1.5),
        ("gold_fraction", -0.1),
    ],
)
def test_project_settings_out_of_range_are_400_on_create_and_change(staff, field, value):
    created = staff.post("/api/v1/projects/", {"slug": "p1", "name": "P", field: value}, format="json")
    assert created.status_code == 400, created.content
    assert [e["field"] for e in created.json()["errors"]] == [field]
    assert not Project.objects.filter(slug="p1").exists()
    assert staff.post("/api/v1/projects/", {"slug": "p2", "name": "P"}, format="json").status_code == 201
    changed = staff.patch("/api/v1/projects/p2/", {field: value}, format="json")
    assert changed.status_code == 400, changed.content
    assert getattr(Project.objects.get(slug="p2"), field) != value


def test_the_largest_settings_still_serve_pairs(staff, make_pairs, make_rater, api):
    body = {
        "slug": "big",
        "name": "Big",
        "judgments_per_pair": MAX_JUDGMENTS_PER_PAIR,
        "lease_seconds": MAX_LEASE_SECONDS,
    }
    assert staff.post("/api/v1/projects/", body, format="json").status_code == 201
    project = Project.objects.get(slug="big")
    make_pairs(project, 3)
    assert api(make_rater(project)).post("/api/v1/projects/big/next/").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"choice": "left", "client_time_ms": 2**31},
        {"choice": "left", "client_time_ms": 10**30},
        {"choice": "left", "client_time_ms": 1.5},
        {"choice": "left", "strength": 2**40},
    ],
)
def test_judgment_numbers_past_their_columns_are_400(make_project, make_pairs, make_rater, api, body):
    project = make_project("nums", strength_levels=3 if "strength" in body else 0)
    make_pairs(project, 1)
    client = api(make_rater(project))
    served = client.post("/api/v1/projects/nums/next/").json()
    response = client.post(f"/api/v1/assignments/{served['assignment']}/judgment/", body, format="json")
    assert response.status_code == 400, response.content
    assert not Judgment.objects.exists()


# Done, or come back later


def test_next_says_whether_the_rater_is_done_or_should_come_back(make_project, make_pairs, make_rater, api):
    project = make_project("wait", judgments_per_pair=1, lease_seconds=600)
    make_pairs(project, 1)
    holder, waiter = api(make_rater(project)), api(make_rater(project))
    held = holder.post("/api/v1/projects/wait/next/").json()

    response = waiter.post("/api/v1/projects/wait/next/")
    assert response.status_code == 204
    assert 590 <= int(response["Retry-After"]) <= 600  # the holder's lease runs out then

    holder.post(f"/api/v1/assignments/{held['assignment']}/judgment/", {"choice": "left"}, format="json")
    done = waiter.post("/api/v1/projects/wait/next/")
    assert done.status_code == 204 and "Retry-After" not in done
    finished = holder.post("/api/v1/projects/wait/next/")
    assert finished.status_code == 204 and "Retry-After" not in finished
    assert Assignment.objects.count() == 1


# The command


def test_import_pairs_command_answers_hostile_files_in_a_line_or_two(project, tmp_path):
    path = tmp_path / "hostile.jsonl"
    lines = [
        json.dumps(good(0)).encode(),
        *(BAD_ITEMS[case].encode() for case in sorted(BAD_ITEMS)),
        b"\xff\xfe",
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    err = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("import_pairs", "hostile", str(path), stdout=io.StringIO(), stderr=err)
    assert f"{len(BAD_ITEMS) + 1} lines of {path} are not JSON" in str(failed.value)
    assert "line 2:" in err.getvalue() and "UTF-8" in err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert not Pair.objects.exists()


# Fuzz


def _hostile_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.choice(["", " ", "\x00", "\ud83d", "é", "<script>alert(1)</script>", "a" * 300, "\u202e"])
    if kind == 1:
        return rng.choice([0, -1, 2**31, 2**63, 10**40, 1.5, -0.0])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice(["a", "b", "tie", "A", "left"])
    if kind == 4:
        return "".join(chr(rng.randrange(0, 0x110000)) for _ in range(rng.randrange(6)))
    if kind in (5, 6):
        return {
            rng.choice(
                [
                    "prompt",
                    "response_a",
                    "response_b",
                    "metadata",
                    "gold",
                    "external_id",
                    "model_a",
                    "\x00",
                    "x",
                ]
            ): _hostile_value(rng, depth + 1)
            for _ in range(rng.randrange(6))
        }
    return [_hostile_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_fuzzed_imports_never_answer_5xx(project, staff):
    rng = random.Random(20261130)
    stored = 0
    for round_ in range(150):
        items = [
            {**good(rng.randrange(5)), **value} if isinstance(value := _hostile_value(rng), dict) else value
            for _ in range(rng.randrange(1, 4))
        ]
        form = rng.choice(["json", "pairs", "jsonl", "bytes"])
        if form == "jsonl":
            text = "\n".join(json.dumps(item) for item in items)
            body, content_type = text.encode("utf-8", "surrogatepass"), "application/x-ndjson"
        elif form == "bytes":
            body, content_type = (
                bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))),
                "application/json",
            )
        else:
            payload = items if form == "json" else {"pairs": items}
            body, content_type = json.dumps(payload).encode("utf-8", "surrogatepass"), "application/json"
        before = Pair.objects.count()
        response = staff.post(URL, body, content_type=content_type)
        assert response.status_code < 500, (round_, body[:300], response.content[:300])
        assert response["Content-Type"].startswith("application/json")
        if response.status_code != 201:
            assert Pair.objects.count() == before  # all or nothing
        stored = Pair.objects.count()
    assert stored > 0  # some rounds were valid, so the fuzzer reaches the storing path too


def test_sqlite_refuses_what_postgresql_refuses(tmp_path):
    """The quickstart's SQLite would store a NUL that PostgreSQL refuses: the same input gets the same
    answer on both, because the check runs before any database sees the text."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'quickstart.sqlite3'}",
        "SECRET_KEY": "test-only",
        "PAIRWISE_VAR_DIR": str(tmp_path / "var"),
    }
    env.pop("REDIS_URL", None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, timeout=300)
    create = "from annotation.models import Project; Project.objects.create(slug='q', name='Q')"
    subprocess.run([*manage, "shell", "-c", create], env=env, check=True, timeout=120)
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\n".join(BAD_ITEMS[case].encode() for case in sorted(BAD_ITEMS)) + b"\n")
    refused = subprocess.run(
        [*manage, "import_pairs", "q", str(path)], env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert f"{len(BAD_ITEMS)} lines of {path} are not JSON" in refused.stderr
    count = "from annotation.models import Pair; print(Pair.objects.count())"
    stored = subprocess.run(
        [*manage, "shell", "-c", count], env=env, capture_output=True, text=True, check=True
    )
    assert stored.stdout.strip().splitlines()[-1] == "0"


# A NUL in a username, wherever one is taken: PostgreSQL cannot hold it in a query's text (a DataError,
# a 500) and no account bears it. Each way in answers 4xx in words.
NUL_NAME = "ra\x00ter"
NUL_CASES = {
    "remove a rater (URL)": lambda api, page: api.delete("/api/v1/projects/hostile/raters/ra%00ter/"),
    "remove a rater (URL, only a NUL)": lambda api, page: api.delete("/api/v1/projects/hostile/raters/%00/"),
    "add raters (JSON)": lambda api, page: api.post(
        "/api/v1/projects/hostile/raters/", {"usernames": ["rater", NUL_NAME]}, format="json"
    ),
    "create a rater (JSON)": lambda api, page: api.post(
        "/api/v1/raters/", {"username": NUL_NAME, "password": "long enough password 7"}, format="json"
    ),
    "token (JSON)": lambda api, page: api.post(
        "/api/v1/auth/token/", {"username": NUL_NAME, "password": "x"}, format="json"
    ),
    "token (form)": lambda api, page: api.post(
        "/api/v1/auth/token/",
        "username=ra%00ter&password=x",
        content_type="application/x-www-form-urlencoded",
    ),
    "login page": lambda api, page: page.post("/login/", {"username": NUL_NAME, "password": "x"}),
    "admin login": lambda api, page: page.post("/admin/login/", {"username": NUL_NAME, "password": "x"}),
}
NUL_ANSWERS = {
    "remove a rater (URL)": (404, "'ra\\\\x00ter' is not a rater in 'hostile'."),  # as JSON writes it
    "remove a rater (URL, only a NUL)": (404, "'\\\\x00' is not a rater in 'hostile'."),
    "add raters (JSON)": (400, "NUL character"),
    "create a rater (JSON)": (400, "NUL character"),
    "token (JSON)": (400, "NUL character"),
    "token (form)": (400, "Null characters are not allowed."),
    "login page": (200, "Username: Null characters are not allowed."),  # the form again, with its error
    "admin login": (200, "Null characters are not allowed."),
}


@pytest.mark.parametrize("case", sorted(NUL_CASES))
def test_a_nul_in_a_username_is_refused_in_words_never_a_500(project, staff, client, make_rater, case):
    rater = make_rater(project, username="rater")
    staff.raise_request_exception = client.raise_request_exception = False
    response = NUL_CASES[case](staff, client)
    status, words = NUL_ANSWERS[case]
    assert response.status_code == status, (case, response.content[:300])
    assert words in response.content.decode(), (case, response.content[:300])
    assert project.memberships.filter(user=rater).exists()


def test_the_rater_services_take_a_name_no_account_can_bear_for_nobody(project, make_rater):
    """The services are called by commands and the admin too, where no parser checked the name first."""
    make_rater(project, username="rater")
    with pytest.raises(Invalid) as refused:
        services.project_raters_add(project=project, usernames=["rater", NUL_NAME, "\ud800"])
    assert [e["message"] for e in refused.value.errors] == [
        "No user named 'ra\\x00ter'.",
        "No user named '\\ud800'.",
    ]
    for name in (NUL_NAME, "\ud800"):
        with pytest.raises(NotFound):
            services.project_rater_remove(project=project, username=name)
