"""`manage.py import_pairs SLUG FILE.jsonl`: all or nothing, every bad line named, non-zero exit on error."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from annotation.models import Pair

ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, lines: list) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def _pair(i: int, **extra) -> dict:
    return {"external_id": f"e{i}", "prompt": f"P{i}", "response_a": f"A{i}", "response_b": f"B{i}", **extra}


def _run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_pairs", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_pairs_imports_a_jsonl_file(make_project, tmp_path):
    project = make_project("cmd")
    path = _write(tmp_path / "pairs.jsonl", [_pair(0), "", _pair(1, gold="b")])
    out, _ = _run("cmd", str(path))
    assert "2 pairs created, 0 unchanged" in out
    assert Pair.objects.filter(project=project).count() == 2
    again, _ = _run("cmd", str(path))
    assert "0 pairs created, 2 unchanged" in again


def test_import_pairs_lists_every_bad_item_by_line_and_stores_nothing(make_project, tmp_path):
    make_project("cmd")
    path = _write(tmp_path / "pairs.jsonl", [_pair(0), "", _pair(1, gold="maybe"), _pair(2, response_b="A2")])
    with pytest.raises(CommandError, match="2 of 3 items are invalid"):
        _run("cmd", str(path))
    assert not Pair.objects.exists()


def test_import_pairs_names_lines_that_are_not_json(make_project, tmp_path):
    make_project("cmd")
    path = _write(tmp_path / "pairs.jsonl", [_pair(0), '{"prompt": ', _pair(2)])
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"^1 line of .* is not JSON"):
        call_command("import_pairs", "cmd", str(path), stderr=err)
    assert "line 2: not valid JSON" in err.getvalue()
    assert not Pair.objects.exists()


def test_import_pairs_refuses_an_unknown_project_and_a_missing_file(make_project, tmp_path):
    with pytest.raises(CommandError, match="No project 'nope'"):
        _run("nope", str(tmp_path / "x.jsonl"))
    make_project("cmd")
    with pytest.raises(CommandError, match="Cannot read"):
        _run("cmd", str(tmp_path / "missing.jsonl"))


@pytest.mark.django_db(transaction=True)
def test_import_pairs_exits_non_zero_and_prints_the_bad_lines(make_project, tmp_path):
    # Through a real process: exit status and stderr are what a shell script sees.
    make_project("cmd")
    path = _write(tmp_path / "pairs.jsonl", [_pair(0), _pair(1, gold="maybe"), "", _pair(3, metadata=[1])])
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings"}
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}"
    result = subprocess.run(
        [sys.executable, "manage.py", "import_pairs", "cmd", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "line 2: gold:" in result.stderr
    assert "line 4: metadata: Must be a JSON object." in result.stderr
    assert "nothing was stored." in result.stderr
    assert not Pair.objects.exists()


def test_the_commands_are_not_held_to_the_apis_per_request_item_limit(make_project, tmp_path, settings):
    """PAIRWISE_MAX_IMPORT_ITEMS bounds one HTTP request; a file imported on the server has no such limit."""
    settings.PAIRWISE_MAX_IMPORT_ITEMS = 2
    project = make_project("many")
    pairs = _write(tmp_path / "pairs.jsonl", [_pair(i) for i in range(5)])
    out, _ = _run("many", str(pairs))
    assert "5 pairs created" in out
    judgments = _write(
        tmp_path / "j.jsonl", [{"pair": f"e{i}", "rater": "r", "choice": "a"} for i in range(5)]
    )
    out = io.StringIO()
    call_command("import_judgments", "many", str(judgments), stdout=out)
    assert project.judgments.count() == 5


def test_import_pairs_lists_the_field_errors_beside_the_lines_that_are_not_json_in_one_run(
    make_project, tmp_path
):
    make_project("cmd")
    lines = [_pair(0), '{"prompt": ', _pair(2, gold="maybe"), "[1, NaN]", _pair(4, response_b="A4"), _pair(5)]
    path = _write(tmp_path / "pairs.jsonl", lines)
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"^2 lines of .* are not JSON .*, and 2 errors in the others"):
        call_command("import_pairs", "cmd", str(path), stderr=err)
    listed = [line.strip() for line in err.getvalue().splitlines()]
    assert [line.split(":")[0] for line in listed] == ["line 2", "line 3", "line 4", "line 5"]
    assert listed[1] == 'line 3: gold: Must be "a", "b" or "tie".'
    assert listed[3] == "line 5: response_b: response_a and response_b are the same text."
    assert not Pair.objects.exists()  # the check of the readable lines stored nothing


@pytest.mark.parametrize(
    "text", [json.dumps([_pair(0), _pair(1)]), "\ufeff[\n  " + json.dumps(_pair(0)) + "\n]\n"]
)
def test_import_pairs_says_a_json_list_is_not_json_lines(make_project, tmp_path, text):
    make_project("cmd")
    path = tmp_path / "pairs.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CommandError, match=r"one JSON document .* reads JSON Lines.*jq -c"):
        _run("cmd", str(path))
    assert not Pair.objects.exists()
