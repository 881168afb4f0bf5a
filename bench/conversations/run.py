"""How much encoding a conversation costs against encoding the same text as a plain prompt, side by side in
one run: N histories of T turns with R responses each, through the chat template (the tests' word-level
ChatML tokenizer) and through the MiniLM tokenizer (no template: the text rendering), against the plain
path given the rendering as one string (the floor: one tokenization, no turns).

    .venv/bin/python bench/conversations/run.py [--histories 16] [--turns 60] [--responses 64]
        [--max-length 512] [--results bench/conversations/RESULTS.md]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from transformers import AutoTokenizer  # noqa: E402

from rm_training.conversation import Message, render  # noqa: E402
from rm_training.model import DEFAULT_BASE_MODEL, resolve_base_model  # noqa: E402
from rm_training.tokenization import PairEncoder  # noqa: E402
from tests.rm_training.conftest import WORDS, chat_tokenizer  # noqa: E402


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def conversations(histories: int, turns: int, seed: int = 0) -> list[list[Message]]:
    rng = random.Random(seed)
    result = []
    for _ in range(histories):
        messages = [{"role": "system", "content": words(rng, 40)}]
        for _ in range(turns):
            messages += [
                {"role": "user", "content": words(rng, rng.randint(10, 120))},
                {"role": "assistant", "content": words(rng, rng.randint(10, 120))},
            ]
        messages.append({"role": "user", "content": words(rng, 40)})
        result.append(messages)
    return result


def timed(function, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--histories", type=int, default=16)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--responses", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    rng = random.Random(1)
    histories = conversations(args.histories, args.turns)
    prompts = [h for h in histories for _ in range(args.responses)]
    responses = [words(rng, rng.randint(20, 200)) for _ in prompts]
    rendered = [render(p) for p in prompts]
    tokenizers = {
        "chat template (ChatML, word-level)": chat_tokenizer(),
        "no template (MiniLM)": AutoTokenizer.from_pretrained(resolve_base_model(DEFAULT_BASE_MODEL)),
    }
    lines = [
        f"{args.histories} histories x {2 * args.turns + 2} messages, {args.responses} responses each, "
        f"max_length {args.max_length}",
        "",
        "| tokenizer | conversations s | rendering as plain text s | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, tokenizer in tokenizers.items():
        encoder = PairEncoder(tokenizer, args.max_length)
        conversation = timed(encoder.encode, prompts, responses)
        encoder.chat = False  # the floor: the plain path, the rendering as one string
        plain = timed(encoder.encode, rendered, responses)
        lines.append(f"| {name} | {conversation:.2f} | {plain:.2f} | **{conversation / plain:.1f}x** |")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    report = f"\n## {time.strftime('%Y-%m-%d %H:%M')} ({commit.stdout.strip()})\n\n" + "\n".join(lines) + "\n"
    print(report)
    if args.results:
        with args.results.open("a", encoding="utf-8") as stream:
            stream.write(report)


if __name__ == "__main__":
    main()
