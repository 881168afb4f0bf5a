"""Reading both JSONL formats of API.md, and the held-out split by prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rm_training.data import (
    Comparison,
    DataError,
    rater_agreement,
    read_comparisons,
    read_data,
    split_by_prompt,
)

from .conftest import write_jsonl


def judgment(pair: int, rater: str, choice: str, strength: int | None = None) -> dict[str, Any]:
    return {
        "judgment_id": hash((pair, rater)) % 10_000,
        "pair_id": pair,
        "external_id": f"p{pair}",
        "prompt": f"prompt {pair}",
        "response_a": f"a{pair}",
        "response_b": f"b{pair}",
        "rater": rater,
        "choice": choice,
        "strength": strength,
    }


def test_preferences_rows_keep_votes_and_margin(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "prefs.jsonl",
        [
            {
                "prompt": "p",
                "chosen": "good",
                "rejected": "bad",
                "pair_id": 7,
                "votes": {"a": 1, "b": 2, "tie": 0},
                "agreement": 0.667,
                "margin": 1.5,
            },
            {"prompt": "q", "chosen": "yes", "rejected": "no"},
        ],
    )
    first, second = read_comparisons(path)
    assert (first.chosen, first.rejected, first.pair_id) == ("good", "bad", "7")
    assert (first.votes_chosen, first.votes_rejected, first.margin) == (2, 1, 1.5)
    assert first.target == pytest.approx(2 / 3) and first.weight == 3
    assert (second.target, second.weight, second.votes_chosen, second.margin) == (1.0, 1.0, 1, None)


def test_a_pair_judged_two_to_one_becomes_one_weighted_comparison(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "judgments.jsonl",
        [
            judgment(1, "r1", "b", 3),
            judgment(1, "r2", "a", 1),
            judgment(1, "r3", "b", 2),
            judgment(2, "r1", "a"),
        ],
    )
    by_pair = {c.pair_id: c for c in read_comparisons(path)}
    split = by_pair["1"]
    assert (split.chosen, split.rejected) == ("b1", "a1")
    assert split.target == pytest.approx(2 / 3) and split.weight == 3
    assert split.margin == pytest.approx(2.5)  # mean strength of the winning votes
    assert (split.votes_chosen, split.votes_rejected) == (2, 1)
    assert by_pair["2"].target == 1.0 and by_pair["2"].chosen == "a2"


def test_without_votes_a_pair_is_its_majority_label(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "j.jsonl", [judgment(1, "r1", "b"), judgment(1, "r2", "a"), judgment(1, "r3", "b")]
    )
    (comparison,) = read_comparisons(path, use_votes=False)
    assert (comparison.chosen, comparison.target, comparison.weight) == ("b1", 1.0, 1.0)


def test_ties_are_dropped_or_count_half(tmp_path: Path) -> None:
    rows = [
        *(judgment(1, rater, choice) for rater, choice in [("r1", "a"), ("r2", "a"), ("r3", "tie")]),
        *(judgment(2, rater, choice) for rater, choice in [("r1", "a"), ("r2", "b")]),
        *(judgment(3, rater, choice) for rater, choice in [("r1", "a"), ("r2", "tie")]),
        *(judgment(4, rater, choice) for rater, choice in [("r1", "a"), ("r2", "tie"), ("r3", "tie")]),
    ]
    path = write_jsonl(tmp_path / "j.jsonl", rows)

    dropped = {c.pair_id: c for c in read_comparisons(path, ties="drop")}
    # Pair 2's votes tie, pair 3's top is shared by a and tie, pair 4's majority is tie: all left out.
    assert set(dropped) == {"1"}
    assert (dropped["1"].target, dropped["1"].weight, dropped["1"].votes_tie) == (1.0, 2.0, 1)

    halved = {c.pair_id: c for c in read_comparisons(path, ties="half")}
    assert (halved["1"].target, halved["1"].weight) == (pytest.approx(2.5 / 3), 3.0)
    assert halved["2"].tie and halved["2"].target == 0.5
    assert (halved["3"].target, halved["4"].target) == (0.75, pytest.approx(2 / 3))


def test_a_pair_id_of_zero_is_an_id(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "j.jsonl", [judgment(0, "r1", "a"), judgment(0, "r2", "a")])
    (comparison,) = read_comparisons(path)
    assert (comparison.pair_id, comparison.weight) == ("0", 2.0)


def test_a_bad_row_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "chosen": "x", "rejected": "y"}\n{"prompt": "p", "chosen": ""}\n')
    with pytest.raises(DataError, match="line 2"):
        read_comparisons(path)
    path.write_text('{"prompt": "p", "text": "neither format"}\n')
    with pytest.raises(DataError, match="neither"):
        read_comparisons(path)


GOOD_ROW = b'{"prompt": "p", "chosen": "x", "rejected": "y"}\n'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"prompt": "\xff", "chosen": "x", "rejected": "y"}', "not UTF-8 text (byte 0xff"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "margin": NaN}', "NaN is not a JSON number"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "margin": -Infinity}', "-Infinity is not a JSON"),
        (
            b'{"prompt": "p", "chosen": "x", "rejected": "y", "margin": 1e400}',
            "the number 1e400 is too large",
        ),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "margin": ' + b"9" * 5000 + b"}", "digits"),
        (b'{"prompt": "p", "chosen": "x\\u0000", "rejected": "y"}', "chosen: the text holds a NUL"),
        (
            b'{"prompt": "p", "chosen": "x", "rejected": "y", "votes": {"a\\u0000": 1}}',
            "votes.a\\x00: the key",
        ),
        (b'{"prompt": "\\ud800", "chosen": "x", "rejected": "y"}', "prompt: the text holds a lone UTF-16"),
        (
            b'{"prompt": "p", "chosen": "x", "rejected": "y", "tags": ' + b"[" * 100 + b"]" * 100 + b"}",
            "nested",
        ),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y"', "not valid JSON"),
        (b'["p", "x", "y"]', "a row must be a JSON object, not a list"),
        (b'"p"', "a row must be a JSON object, not 'p'"),
    ],
)
def test_values_the_reader_refuses_name_the_file_and_line(tmp_path: Path, line: bytes, message: str) -> None:
    """The trainer reads with rm_training.jsonl: the API's and the commands' refusals, in their words."""
    path = tmp_path / "prefs.jsonl"
    path.write_bytes(GOOD_ROW + b"\n" + line + b"\n" + GOOD_ROW)
    with pytest.raises(DataError) as raised:
        read_comparisons(path)
    assert str(raised.value).startswith(f"{path}: line 3: ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_byte_order_mark_and_blank_lines_are_read_past(tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_ROW + b"\n  \n" + GOOD_ROW.replace(b'"p"', b'"q"'))
    assert [c.prompt for c in read_comparisons(path)] == ["p", "q"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"votes": {"a": True, "b": 0}}, "votes.a: must be a whole number from 0 to 2147483647, not true"),
        (
            {"votes": {"a": 2, "b": -1}},
            "votes.b: must be a whole number from 0 to 2147483647, not the number -1",
        ),
        ({"votes": {"a": 1.5}}, "votes.a: must be a whole number"),
        ({"votes": {"a": 2.0}}, "votes.a: must be a whole number"),
        ({"votes": {"a": "2"}}, "votes.a: must be a whole number"),
        ({"votes": {"a": 2**31}}, "votes.a: must be a whole number"),
        ({"votes": {"A": 2}}, "votes: unknown choice 'A'"),
        ({"votes": [2, 1, 0]}, "votes: must be an object of counts a, b, tie, not a list"),
        ({"margin": "1.5"}, "margin: must be a number, not '1.5'"),
        ({"margin": True}, "margin: must be a number, not true"),
        ({"margin": -1}, "margin: must be a finite number of at least 0"),
        ({"margin": 10**400}, "margin: is too large for a number"),
        ({"prompt": 5}, "prompt: must be a string, not the number 5"),
        ({"prompt": ["p"]}, 'prompt.0: must be an object {"role", "content"}'),
        ({"prompt": [{"role": "assistant", "content": "p"}]}, "prompt.0.role: must be 'user'"),
        ({"chosen": [{"role": "user", "content": "x"}]}, "chosen: must be a string or a list of one message"),
        ({"chosen": None}, "chosen: must be a string, not null"),
        ({"rejected": {"text": "y"}}, "rejected: must be a string, not an object"),
        ({"pair_id": 1.5}, "pair_id: must be a string or an integer"),
        ({"external_id": False}, "external_id: must be a string or an integer"),
    ],
)
def test_a_preferences_field_of_the_wrong_type_names_its_line(
    tmp_path: Path, row: dict[str, Any], message: str
) -> None:
    path = write_jsonl(
        tmp_path / "prefs.jsonl",
        [
            {"prompt": "p", "chosen": "x", "rejected": "y"},
            {"prompt": "q", "chosen": "x", "rejected": "y"} | row,
        ],
    )
    with pytest.raises(DataError) as raised:
        read_comparisons(path)
    assert str(raised.value).startswith(f"{path}: line 2: {message}")


def test_a_missing_response_is_refused(tmp_path: Path) -> None:
    for key in ("chosen", "rejected"):
        row = {"prompt": "p", "chosen": "x", "rejected": "y"}
        del row[key]
        path = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "p", "chosen": "x", "rejected": "y"}, row])
        with pytest.raises(DataError, match=f"line 2: {key}: missing"):
            read_comparisons(path)
    for key in ("response_a", "response_b"):
        row = judgment(1, "r1", "a")
        del row[key]
        with pytest.raises(DataError, match=f"line 2: {key}: missing"):
            read_comparisons(write_jsonl(tmp_path / "j.jsonl", [judgment(1, "r2", "a"), row]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"choice": "A"}, "choice: must be 'a', 'b' or 'tie', not 'A'"),
        ({"choice": ["a"]}, "choice: must be 'a', 'b' or 'tie', not a list"),
        ({"choice": None}, "choice: must be 'a', 'b' or 'tie', not null"),
        ({"strength": "3"}, "strength: must be a number, not '3'"),
        ({"strength": True}, "strength: must be a number, not true"),
        ({"strength": -2}, "strength: must be a finite number of at least 0, not the number -2"),
        ({"response_a": 7}, "response_a: must be a string, not the number 7"),
        ({"pair_id": {"id": 1}}, "pair_id: must be a string or an integer, not an object"),
        ({"response_b": "another text"}, "pair '1' has a different prompt or responses than on line 1"),
    ],
)
def test_a_judgments_field_of_the_wrong_type_names_its_line(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = write_jsonl(tmp_path / "j.jsonl", [judgment(1, "r1", "a"), judgment(1, "r2", "b") | change])
    with pytest.raises(DataError) as raised:
        read_comparisons(path)
    assert str(raised.value) == f"{path}: line 2: {message}"


def test_a_file_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n \n")
    for path, message in [
        (tmp_path / "missing.jsonl", "no such file"),
        (tmp_path, "a directory, not a JSON Lines file"),
        (tmp_path / "empty.jsonl", "no rows: the file is empty"),
    ]:
        with pytest.raises(DataError) as raised:
            read_comparisons(path)
        assert str(raised.value) == f"{path}: {message}"


@pytest.mark.parametrize(
    "row",
    [
        {"prompt": "p", "chosen": "", "rejected": "a real answer"},
        {"prompt": "p", "chosen": "a real answer", "rejected": ""},
        {"prompt": "", "chosen": "x", "rejected": "y"},
        {"chosen": "x", "rejected": "y"},
        {"prompt": None, "chosen": "", "rejected": "y"},
    ],
)
def test_empty_responses_and_prompts_are_accepted(tmp_path: Path, row: dict[str, Any]) -> None:
    (comparison,) = read_comparisons(write_jsonl(tmp_path / "prefs.jsonl", [row]))
    assert (comparison.prompt, comparison.chosen, comparison.rejected) == (
        row.get("prompt") or "",
        row["chosen"],
        row["rejected"],
    )


def test_an_empty_response_in_judgments_is_accepted(tmp_path: Path) -> None:
    rows = [judgment(1, "r1", "b") | {"response_a": ""}, judgment(1, "r2", "b") | {"response_a": ""}]
    (comparison,) = read_comparisons(write_jsonl(tmp_path / "j.jsonl", rows))
    assert (comparison.chosen, comparison.rejected, comparison.weight) == ("b1", "", 2.0)


def test_pairs_with_the_same_text_on_both_sides_are_dropped_and_counted(tmp_path: Path) -> None:
    preferences = write_jsonl(
        tmp_path / "prefs.jsonl",
        [
            {"prompt": "p", "chosen": "same", "rejected": "same"},
            {"prompt": "q", "chosen": "", "rejected": ""},
            {"prompt": "r", "chosen": "x", "rejected": "y"},
            {"prompt": "s", "chosen": "x", "rejected": "y", "votes": {"a": 1, "b": 1}},
        ],
    )
    data = read_data(preferences)
    assert [c.prompt for c in data.comparisons] == ["r"]
    assert (data.rows, data.identical, data.left_out) == (4, 2, 1)

    rows = [judgment(1, "r1", "a"), judgment(1, "r2", "b"), judgment(2, "r1", "a"), judgment(2, "r2", "a")]
    rows[2:] = [row | {"response_b": row["response_a"]} for row in rows[2:]]
    data = read_data(write_jsonl(tmp_path / "j.jsonl", rows))
    assert (data.comparisons, data.rows, data.identical, data.left_out) == ([], 4, 1, 1)


def test_a_file_without_usable_pairs_says_where_they_went(tmp_path: Path) -> None:
    for rows, message in [
        ([{"prompt": "p", "chosen": "x", "rejected": "x"}], "no usable pairs in 1 row: 1 with the same text"),
        (
            [{"prompt": "p", "chosen": "x", "rejected": "y", "votes": {"a": 1, "b": 1}}] * 2,
            "no usable pairs in 2 rows: 2 left out by the votes rule",
        ),
    ]:
        path = write_jsonl(tmp_path / "prefs.jsonl", rows)
        data = read_data(path)
        with pytest.raises(DataError) as raised:
            data.usable(path)
        assert str(raised.value).startswith(f"{path}: {message}")


def comparisons_with_shared_prompts() -> list[Comparison]:
    return [Comparison(prompt=f"prompt {i % 40}", chosen=f"c{i}", rejected=f"r{i}") for i in range(200)]


def test_split_keeps_every_prompt_on_one_side() -> None:
    comparisons = comparisons_with_shared_prompts()
    train, held_out = split_by_prompt(comparisons, eval_fraction=0.2, seed=1)
    assert not {c.prompt for c in train} & {c.prompt for c in held_out}
    assert len(train) + len(held_out) == 200
    assert 30 <= len(held_out) <= 50


def test_split_depends_on_the_seed_not_the_row_order() -> None:
    comparisons = comparisons_with_shared_prompts()
    _, held_out = split_by_prompt(comparisons, eval_fraction=0.2, seed=1)
    _, held_out_reversed = split_by_prompt(comparisons[::-1], eval_fraction=0.2, seed=1)
    _, held_out_other_seed = split_by_prompt(comparisons, eval_fraction=0.2, seed=2)
    assert {c.chosen for c in held_out} == {c.chosen for c in held_out_reversed}
    assert {c.prompt for c in held_out} != {c.prompt for c in held_out_other_seed}


def test_rater_agreement_counts_agreeing_pairs_of_judgments() -> None:
    # 2-to-1: of the 6 ordered pairs of judgments, 2 agree; unanimous 3-0: all 6 agree.
    split = Comparison(prompt="p", chosen="a", rejected="b", votes_chosen=2, votes_rejected=1)
    unanimous = Comparison(prompt="q", chosen="a", rejected="b", votes_chosen=3)
    assert rater_agreement([split]) == pytest.approx(2 / 6)
    assert rater_agreement([split, unanimous]) == pytest.approx(8 / 12)
    assert rater_agreement([Comparison(prompt="p", chosen="a", rejected="b")]) is None


def test_the_exports_strength_is_the_margin_and_a_trl_margin_wins(tmp_path: Path) -> None:
    rows = [
        {"prompt": "p", "chosen": "x", "rejected": "y", "strength": 2.5},
        {"prompt": "q", "chosen": "x", "rejected": "y", "strength": 2.5, "margin": 0.5},
        {"prompt": "r", "chosen": "x", "rejected": "y", "strength": None},
    ]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    assert [c.margin for c in read_comparisons(path)] == [2.5, 0.5, None]


def test_a_rater_who_judged_a_pair_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    rows = [judgment(1, "r1", "a"), judgment(2, "r1", "a"), judgment(1, "r2", "b"), judgment(1, "r1", "b")]
    path = write_jsonl(tmp_path / "j.jsonl", rows)
    with pytest.raises(DataError) as raised:
        read_comparisons(path)
    assert str(raised.value) == (
        f"{path}: line 4: rater 'r1' judged pair '1' already on line 1: a rater counts once per pair"
    )


def test_judgments_without_a_rater_are_a_vote_each(tmp_path: Path) -> None:
    anonymous = {k: v for k, v in judgment(1, "r1", "a").items() if k != "rater"}
    path = write_jsonl(tmp_path / "j.jsonl", [anonymous, anonymous, anonymous | {"choice": "b"}])
    (pair,) = read_comparisons(path)
    assert (pair.votes_chosen, pair.votes_rejected) == (2, 1)
