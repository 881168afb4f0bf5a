"""bench/active (active selection simulated with oracle raters) keeps working: its selection rule, its
"labels saved" arithmetic, its teacher's noise level, and a --quick run end to end on synthetic pairs written
here (the default base model on the CPU; nothing from ../shared, nothing downloaded)."""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "active" / "run.py"


@functools.cache
def _bench():
    spec = importlib.util.spec_from_file_location("bench_active_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_greedy_picks_the_pairs_nearest_even_odds_in_order():
    bench = _bench()
    prob_a = np.array([0.9, 0.45, 0.1, 0.6, 0.52, 0.5])
    picked = bench.pick(prob_a, np.array([0, 1, 2, 3, 4]), 3, 0.0, np.random.default_rng(0))
    assert picked.tolist() == [4, 1, 3]  # pair 5 is not a candidate (already labelled)


def test_each_pick_is_the_most_uncertain_with_the_engines_probability():
    # As the engine serves a claim: the most uncertain pair with probability 1 - eps + eps / n, any other
    # with eps / n; and a batch never repeats a pair.
    bench = _bench()
    prob_a = np.array([0.5, 0.9, 0.1, 0.8, 0.3])
    candidates = np.arange(5)
    rng = np.random.default_rng(1)
    draws = 20_000
    first = np.zeros(5)
    for _ in range(draws):
        batch = bench.pick(prob_a, candidates, 3, 0.2, rng)
        assert len(set(batch.tolist())) == 3
        first[batch[0]] += 1
    expected = np.array([0.8 + 0.2 / 5] + [0.2 / 5] * 4)
    standard_error = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(first / draws - expected) < 4 * standard_error)


def test_labels_to_reach_interpolates_between_rounds():
    bench = _bench()
    labels, curve = [10, 20, 30], [0.5, 0.6, 0.7]
    assert bench.labels_to_reach(labels, curve, 0.65) == pytest.approx(25)
    assert bench.labels_to_reach(labels, curve, 0.4) == 10
    assert bench.labels_to_reach(labels, curve, 0.71) is None


def test_the_teachers_labels_agree_as_often_as_asked():
    bench = _bench()
    margins = np.random.default_rng(2).normal(size=500)
    scale = bench.teacher_scale(margins, 0.73)
    p = bench.sigmoid(scale * margins)
    assert np.mean(p**2 + (1 - p) ** 2) == pytest.approx(0.73, abs=1e-6)


def _synthetic_llmbar(folder: Path, n: int = 60) -> None:
    """n LLMBar-format pairs, each a real answer against a refusal, the answer on a seeded random side."""
    topics = ["bake bread", "fix a flat tyre", "learn French", "plant tomatoes", "tie a tie", "save money",
              "write a poem", "run a marathon", "paint a wall", "brew coffee"]  # fmt: skip
    refusals = ["Sorry, I cannot help with that.", "I am not able to answer this request.",
                "I won't do that.", "As an AI I refuse to answer."]  # fmt: skip
    rng = random.Random(3)
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        answer = f"To {topic}, start with step one, then practise every day; here are {i % 7 + 2} tips."
        refusal = refusals[i % len(refusals)]
        answer_first = rng.random() < 0.5
        rows.append(
            {
                "input": f"Question {i}: how do I {topic}?",
                "output_1": answer if answer_first else refusal,
                "output_2": refusal if answer_first else answer,
                "label": 1 if answer_first else 2,
            }
        )
    folder.mkdir()
    (folder / "Synthetic.json").write_text(json.dumps(rows), encoding="utf-8")


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=300, cwd=REPO
    )


@pytest.mark.slow
def test_the_quick_bench_runs_on_synthetic_pairs_and_reuses_its_embeddings(tmp_path):
    data, out = tmp_path / "pairs", tmp_path / "out"
    _synthetic_llmbar(data)
    done = _run("--quick", "--data", str(data), "--output", str(out), "--results", str(tmp_path / "R.md"))
    assert done.returncode == 0, done.stderr
    assert "computed in" in done.stdout
    report = (tmp_path / "R.md").read_text()
    for heading in ("## teacher: held-out accuracy", "## teacher: expected agreement", "## gold: held-out"):
        assert heading in report
    assert "| labels | random | uncertainty | greedy |" in report
    assert "labels saved" in report or "no labels saved" in report or "is not compared" in report
    assert (out / "active.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "results.json").read_text())
    (run,) = result["seeds"]
    assert run["sizes"]["budget"] == 18
    for oracle in ("teacher", "gold"):
        for curve in run["curves"][oracle].values():
            assert curve["labels"] == [6, 12, 18]
            assert all(0 <= a <= 1 for a in curve["accuracy"])
    # An answer against a refusal is easy: a head trained on 18 gold labels gets the held-out pairs right.
    assert run["curves"]["gold"]["random"]["accuracy"][-1] >= 0.75

    again = _run("--quick", "--data", str(data), "--output", str(out))
    assert again.returncode == 0, again.stderr
    assert "read from the cache" in again.stdout
    assert json.loads((out / "results.json").read_text())["seeds"] == result["seeds"]  # seeded: the same


def test_the_bench_says_what_data_to_pass(tmp_path):
    done = _run("--data", str(tmp_path / "missing"), "--output", str(tmp_path / "out"))
    assert done.returncode != 0
    assert "pass --data" in done.stderr
