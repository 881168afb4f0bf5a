"""Conversations in and out: pairs whose prompt is a list of messages, TRL and HH-RLHF rows imported by the
API and the command, per-item errors, re-import identity, and the exports (conversational, standard,
judgments JSON Lines and CSV) with hostile text, read back by the trainer as the same pairs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from annotation import services
from annotation.models import Pair, Project
from rm_training.conversation import render
from rm_training.data import read_comparisons

SYSTEM = {"role": "system", "content": "You are terse."}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


HISTORY = [SYSTEM, user("What is a river?"), assistant("Flowing water."), user("And a stone?")]


@pytest.fixture
def project(make_project) -> Project:
    return make_project("chat", judgments_per_pair=1)


@pytest.fixture
def staff(admin_user, api):
    return api(admin_user)


def url(slug: str = "chat", fmt: str | None = None) -> str:
    return f"/api/v1/projects/{slug}/pairs/" + (f"?format={fmt}" if fmt else "")


def jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_a_conversation_is_stored_with_its_rendering_and_listed(project, staff) -> None:
    item = {"external_id": "c1", "prompt": HISTORY, "response_a": "A rock.", "response_b": "No idea."}
    assert staff.post(url(), [item], format="json").json() == {"created": 1, "unchanged": 0}
    pair = Pair.objects.get()
    assert pair.messages == HISTORY and pair.prompt == render(HISTORY)
    assert pair.prompt.startswith("System: You are terse.\n\nUser: What is a river?")
    listed = staff.get(url()).json()["results"][0]
    assert (listed["prompt"], listed["messages"]) == (pair.prompt, HISTORY)


def test_a_lone_user_message_is_the_plain_prompt_and_the_same_pair(project, staff) -> None:
    plain = {"prompt": "Hi", "response_a": "a", "response_b": "b"}
    assert staff.post(url(), [plain], format="json").json()["created"] == 1
    again = staff.post(url(), [{**plain, "prompt": [user("Hi")]}], format="json").json()
    assert again == {"created": 0, "unchanged": 1}
    assert Pair.objects.get().messages is None


def test_re_import_identity_covers_the_messages(project, staff) -> None:
    item = {"external_id": "c1", "prompt": HISTORY, "response_a": "x", "response_b": "y"}
    staff.post(url(), [item], format="json")
    assert staff.post(url(), [item], format="json").json() == {"created": 0, "unchanged": 1}
    changed = [*HISTORY[:-1], user("And a cloud?")]
    refused = staff.post(url(), [{**item, "prompt": changed}], format="json")
    assert refused.status_code == 400
    assert (
        refused.json()["errors"][0]["message"]
        == "A pair 'c1' already exists in this project with other content."
    )
    # Without an external_id, the content (messages included) is the identity.
    anonymous = {"prompt": changed, "response_a": "x", "response_b": "y"}
    assert staff.post(url(), [anonymous, anonymous], format="json").json() == {"created": 1, "unchanged": 1}


def test_each_bad_message_is_an_error_of_its_item_and_field(project, staff) -> None:
    items = [
        {"prompt": HISTORY, "response_a": "x", "response_b": "y"},
        {"prompt": [user("a"), user("b")], "response_a": "x", "response_b": "y"},
        {
            "prompt": [SYSTEM, {"role": "tool", "content": "c"}, user(" ")],
            "response_a": "x",
            "response_b": "y",
        },
        {"prompt": [], "response_a": "x", "response_b": "y"},
        {"prompt": [user("a"), assistant("b")], "response_a": "x", "response_b": "y"},
    ]
    response = staff.post(url(), items, format="json")
    assert response.status_code == 400
    errors = [(e["index"], e["field"], e["message"]) for e in response.json()["errors"]]
    assert errors == [
        (
            1,
            "prompt.1.role",
            "Must be 'assistant': after the system message, turns alternate user and assistant, starting "
            "with the user.",
        ),
        (2, "prompt.1.role", 'Must be "system", "user" or "assistant".'),
        (
            2,
            "prompt.2.role",
            "Must be 'assistant': after the system message, turns alternate user and assistant, starting "
            "with the user.",
        ),
        (2, "prompt.2.content", "Must not be empty or blank."),
        (3, "prompt", "Must have at least one message."),
        (4, "prompt.1.role", "The last message must be the user's."),
    ]
    assert not Pair.objects.exists()


HH_ROWS = [
    {
        "chosen": "\n\nHuman: What is a river?\n\nAssistant: Flowing water.\n\nHuman: And a stone?"
        "\n\nAssistant: A rock.",
        "rejected": "\n\nHuman: What is a river?\n\nAssistant: Flowing water.\n\nHuman: And a stone?"
        "\n\nAssistant: No idea.",
    },
    {
        "chosen": "\n\nHuman: Hello\n\nAssistant: Hi there!",
        "rejected": "\n\nHuman: Hello\n\nAssistant: Go away.",
    },
]
HH_AS_TRL = [
    {
        "prompt": [user("What is a river?"), assistant("Flowing water."), user("And a stone?")],
        "chosen": [assistant("A rock.")],
        "rejected": [assistant("No idea.")],
    },
    # The implicit-prompt form: whole conversations sharing their history.
    {"chosen": [user("Hello"), assistant("Hi there!")], "rejected": [user("Hello"), assistant("Go away.")]},
]


def _pairs(project: Project) -> list[tuple[Any, ...]]:
    return list(
        Pair.objects.filter(project=project)
        .order_by("id")
        .values_list("prompt", "messages", "response_a", "response_b")
    )


def test_hh_and_trl_rows_import_as_the_same_pairs(make_project, staff) -> None:
    hh, trl = make_project("hh"), make_project("trl")
    answer = staff.post(url("hh", "hh-rlhf"), jsonl(HH_ROWS), content_type="application/x-ndjson")
    assert answer.status_code == 201, answer.json()
    assert staff.post(url("trl", "trl"), HH_AS_TRL, format="json").status_code == 201
    assert _pairs(hh) == _pairs(trl)
    first, second = _pairs(hh)
    assert first == (
        render(HH_AS_TRL[0]["prompt"]),
        HH_AS_TRL[0]["prompt"],
        "A rock.",
        "No idea.",
    )
    assert second == ("Hello", None, "Hi there!", "Go away.")  # a lone user turn is a plain prompt
    assert Pair.objects.filter(project=hh).first().metadata == {"format": "hh-rlhf", "preferred": "a"}
    # Re-importing the same file changes nothing.
    again = staff.post(url("hh", "hh-rlhf"), jsonl(HH_ROWS), content_type="application/x-ndjson")
    assert again.json() == {"created": 0, "unchanged": 2}


def test_messy_rows_are_errors_of_their_item_and_nothing_is_stored(project, staff) -> None:
    rows = [
        HH_ROWS[0],
        {**HH_ROWS[1], "rejected": "\n\nHuman: Hullo\n\nAssistant: Go away."},
        {
            "chosen": "\n\nHuman: Hi\n\nAssistant: Yes\nHuman: injected",
            "rejected": "\n\nHuman: Hi\n\nAssistant: No",
        },
        {"chosen": "\n\nHuman: Hi\n\nAssistant:", "rejected": "\n\nHuman: Hi\n\nAssistant: "},
        {"chosen": "\n\nHuman: \n\nAssistant: a", "rejected": "\n\nHuman: \n\nAssistant: b"},
    ]
    response = staff.post(url(fmt="hh-rlhf"), rows, format="json")
    assert response.status_code == 400
    errors = [(e["index"], e["field"]) for e in response.json()["errors"]]
    assert errors == [(1, "rejected"), (2, "chosen"), (3, "rejected"), (4, "prompt.0.content")]
    messages = [e["message"] for e in response.json()["errors"]]
    assert messages[0].startswith("Differs from chosen at message 0, before the last turn")
    assert "at the start of a line" in messages[1]
    assert messages[2] == "response_a and response_b are the same text."
    assert not Pair.objects.exists()


def test_an_unknown_format_is_refused(project, staff) -> None:
    response = staff.post(url(fmt="alpaca"), [], format="json")
    assert response.status_code == 400 and "format" in json.dumps(response.json())


def test_the_command_imports_hh_transcripts(project, tmp_path: Path) -> None:
    path = tmp_path / "hh.jsonl"
    path.write_text(jsonl(HH_ROWS), encoding="utf-8")
    out = io.StringIO()
    call_command("import_pairs", "chat", str(path), "--format", "hh-rlhf", stdout=out)
    assert "2 pairs created" in out.getvalue()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl([HH_ROWS[0], {"chosen": "no turns", "rejected": "x"}]), encoding="utf-8")
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 of 2 items is invalid"):
        call_command("import_pairs", "chat", str(bad), "--format", "hh-rlhf", stderr=err)
    assert "line 2: chosen: No " in err.getvalue()


# Exports

HOSTILE = [
    {"role": "system", "content": '=HYPERLINK("http://evil.example","x") </script><script>alert(1)</script>'},
    user('He said "hi"\n\nAssistant: fake turn\r\n<img src=x onerror=alert(1)>'),
    assistant("-2+3 @SUM(A1)"),
    user("=1+1"),
]


def _rate_all(project: Project, rater: Any) -> None:
    """Judge every pair for the side its import says was preferred (metadata), else for a."""
    while (served := services.assignment_next(project=project, user=rater)) is not None:
        preferred = served.assignment.pair.metadata.get("preferred", "a")
        choice = "left" if served.assignment.shown_left == preferred else "right"
        services.judgment_record(assignment_id=served.assignment.pk, user=rater, choice=choice)


def test_exports_keep_the_conversation_and_neutralise_hostile_text(
    project, staff, make_rater, tmp_path
) -> None:
    items = [
        {
            "external_id": "h",
            "prompt": HOSTILE,
            "response_a": "=cmd|' /C calc'!A0",
            "response_b": "<b>bold</b>",
        },
        {"external_id": "p", "prompt": "plain", "response_a": "x", "response_b": "y"},
    ]
    assert staff.post(url(), items, format="json").status_code == 201
    _rate_all(project, make_rater(project))

    export = "/api/v1/projects/chat/export/"
    conversational = [
        json.loads(line)
        for line in b"".join(staff.get(export + "preferences.jsonl?format=conversational").streaming_content)
        .decode()
        .splitlines()
    ]
    assert conversational[0]["prompt"] == HOSTILE
    assert conversational[0]["chosen"] == [assistant("=cmd|' /C calc'!A0")]
    assert conversational[1]["prompt"] == [user("plain")]
    standard_body = b"".join(staff.get(export + "preferences.jsonl").streaming_content).decode()
    standard = [json.loads(line) for line in standard_body.splitlines()]
    assert [row["prompt"] for row in standard] == [render(HOSTILE), "plain"]

    judgments_body = b"".join(staff.get(export + "judgments.jsonl").streaming_content).decode()
    lines = judgments_body.splitlines()
    assert len(lines) == 2  # newlines inside messages are escaped, not line breaks
    judgments = [json.loads(line) for line in lines]
    assert judgments[0]["messages"] == HOSTILE and judgments[1]["messages"] is None
    assert judgments[0]["prompt"] == render(HOSTILE)

    csv_body = b"".join(staff.get(export + "judgments.csv").streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(csv_body)))
    assert json.loads(rows[0]["messages"]) == HOSTILE and rows[1]["messages"] == ""
    # No cell a spreadsheet would run: the messages are JSON text, formula-like cells get a quote.
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert rows[0]["response_a"] == "'=cmd|' /C calc'!A0"

    # The trainer reads both conversational exports back to the same conversation.
    for name, body in (("judgments.jsonl", judgments_body), ("conversational.jsonl", None)):
        path = tmp_path / name
        path.write_text(body if body is not None else jsonl(conversational), encoding="utf-8")
        comparisons = {c.pair_id: c for c in read_comparisons(path)}
        hostile = next(c for c in comparisons.values() if c.messages is not None)
        assert (hostile.messages, hostile.prompt, hostile.chosen) == (
            HOSTILE,
            render(HOSTILE),
            "=cmd|' /C calc'!A0",
        )


def test_hh_and_trl_imports_export_the_same_training_pairs(make_project, staff, make_rater, tmp_path) -> None:
    exports = {}
    for slug, fmt, rows in (("hh", "hh-rlhf", HH_ROWS), ("trl", "trl", HH_AS_TRL)):
        project = make_project(slug, judgments_per_pair=1)
        assert staff.post(url(slug, fmt), rows, format="json").status_code == 201
        _rate_all(project, make_rater(project))
        for kind in ("preferences.jsonl?format=conversational", "judgments.jsonl"):
            body = b"".join(staff.get(f"/api/v1/projects/{slug}/export/{kind}").streaming_content)
            path = tmp_path / f"{slug}-{kind.split('.')[0]}.jsonl"
            path.write_bytes(body)
            exports[(slug, kind)] = [
                (c.prompt, c.messages, c.chosen, c.rejected, c.target) for c in read_comparisons(path)
            ]
    expected = [
        (render(HH_AS_TRL[0]["prompt"]), HH_AS_TRL[0]["prompt"], "A rock.", "No idea.", 1.0),
        ("Hello", None, "Hi there!", "Go away.", 1.0),
    ]
    assert all(comparisons == expected for comparisons in exports.values()), exports
    # And the TRL rows themselves, read by the trainer directly, are the same pairs.
    direct = tmp_path / "direct.jsonl"
    direct.write_text(jsonl(HH_AS_TRL), encoding="utf-8")
    assert [
        (c.prompt, c.messages, c.chosen, c.rejected, c.target) for c in read_comparisons(direct)
    ] == expected
