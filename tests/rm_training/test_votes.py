"""The one rule that turns a pair's votes into a training example, shared by the trainer and the
preferences export: the same pairs whichever file a project's judgments reach the trainer through."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rm_training.data import read_comparisons
from rm_training.votes import Votes, outcome, preference_row


@pytest.mark.parametrize(
    ("votes", "majority"),
    [
        (Votes(a=2, b=1), "a"),
        (Votes(b=1), "b"),
        (Votes(a=1, tie=2), "tie"),
        (Votes(a=1, b=1), None),
        (Votes(a=2, b=0, tie=2), None),
        (Votes(), None),
    ],
)
def test_the_majority_is_the_one_choice_with_strictly_most_votes(votes: Votes, majority: str | None) -> None:
    assert votes.majority() == majority


@pytest.mark.parametrize(
    "votes", [Votes(a=1, tie=2), Votes(b=1, tie=1), Votes(a=1, b=1), Votes(a=2, b=1, tie=2), Votes(tie=3)]
)
def test_with_ties_dropped_a_pair_without_a_side_in_the_majority_is_left_out(votes: Votes) -> None:
    # The fault this rule fixes: {a: 1, tie: 2} used to become a unanimous A pair (target 1.0).
    assert outcome(votes, ties="drop") is None
    assert outcome(votes, ties="drop", use_votes=False) is None
    assert preference_row(prompt="p", response_a="x", response_b="y", votes=votes) is None


def test_with_ties_dropped_the_target_is_the_winners_share_of_decisive_votes() -> None:
    result = outcome(Votes(a=1, b=2, tie=1), ties="drop")
    assert result is not None
    assert (result.chosen, result.rejected, result.tie) == ("b", "a", False)
    assert (result.target, result.weight) == (pytest.approx(2 / 3), 3.0)
    assert (result.votes_chosen, result.votes_rejected, result.votes_tie) == (2, 1, 1)
    assert result.agreement == pytest.approx(0.5)
    plain = outcome(Votes(a=1, b=2, tie=1), ties="drop", use_votes=False)
    assert plain is not None and (plain.target, plain.weight) == (1.0, 1.0)


def test_with_ties_as_half_votes_a_tie_counts_half_for_each_side() -> None:
    leaning = outcome(Votes(a=1, tie=2), ties="half")
    assert leaning is not None
    assert (leaning.chosen, leaning.tie, leaning.target, leaning.weight) == (
        "a",
        False,
        pytest.approx(2 / 3),
        3.0,
    )
    even = outcome(Votes(a=1, b=1, tie=1), ties="half")
    assert even is not None and (even.tie, even.target, even.weight) == (True, 0.5, 3.0)
    assert outcome(Votes(), ties="half") is None


def test_a_projects_judgments_and_its_preferences_train_the_same_pairs(tmp_path: Path) -> None:
    rng = random.Random(7)
    judgments, preferences = [], []
    for pair in range(300):
        prompt, response_a, response_b = f"prompt {pair}", f"answer A {pair}", f"answer B {pair}"
        choices = rng.choices(["a", "b", "tie"], weights=[4, 3, 2], k=rng.randint(1, 5))
        strengths = {choice: rng.randint(1, 3) for choice in ("a", "b")}
        for rater, choice in enumerate(choices):
            judgments.append(
                {
                    "pair_id": pair,
                    "prompt": prompt,
                    "response_a": response_a,
                    "response_b": response_b,
                    "rater": f"r{rater}",
                    "choice": choice,
                    "strength": strengths.get(choice),
                }
            )
        votes = Votes(a=choices.count("a"), b=choices.count("b"), tie=choices.count("tie"))
        winner = votes.majority()
        row = preference_row(
            prompt=prompt,
            response_a=response_a,
            response_b=response_b,
            votes=votes,
            strength=strengths.get(winner or ""),
        )
        if row is not None:
            preferences.append({**row, "pair_id": pair})
    (tmp_path / "j.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judgments), encoding="utf-8")
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preferences), encoding="utf-8")

    for use_votes in (True, False):
        from_judgments = read_comparisons(tmp_path / "j.jsonl", use_votes=use_votes, ties="drop")
        from_preferences = read_comparisons(tmp_path / "p.jsonl", use_votes=use_votes, ties="drop")
        assert 0 < len(from_preferences) < 300  # some pairs really were left out
        assert from_judgments == from_preferences
