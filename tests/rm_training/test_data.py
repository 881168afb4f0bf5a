"""Reading both JSONL formats of API.md, and the held-out split by prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rm_training.data import Comparison, DataError, rater_agreement, read_comparisons, split_by_prompt


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


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
