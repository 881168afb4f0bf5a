"""Benchmark: POST /api/v1/score/ under gunicorn against RewardScorer called in a process of its own on the
same inputs, in responses per second, for batches of 16 and 64 responses.

A MiniLM reward model is trained briefly (its quality does not matter here, only its size) and activated
through the service, which loads and rescores it; the server then loads it on its first request (not
timed). Requests go one at a time over one keep-alive connection to one sync gunicorn worker, so both
sides score one batch at a time on the same CPUs; the difference is HTTP, JSON, authentication, the
active-model lookup and the serializer.

    .venv/bin/python bench/score/run.py [--seconds 60] [--max-length 256]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import bench_env, gunicorn, llmbar_items, setup_django, staff_token


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="per batch size, both sides together")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/pairwise_h11")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-score-"))
    env = bench_env(args.database_url, args.broker, work / "runs")
    env["PAIRWISE_SCORE_DEVICE"] = "cpu"
    setup_django()
    from django.utils import timezone

    from annotation.models import Project
    from reward_models import files, services
    from reward_models.models import RunStatus, TrainingRun
    from rm_training.config import TrainingConfig
    from rm_training.data import Comparison
    from rm_training.scoring import RewardScorer
    from rm_training.train import train

    items = llmbar_items()
    project = Project.objects.create(slug=f"bench-score-{int(time.time())}", name="bench score")
    run = TrainingRun.objects.create(project=project, config={})
    run.output_dir = f"runs/{run.pk}/model"
    config = TrainingConfig(max_length=args.max_length, batch_size=16, epochs=1, device="cpu")
    examples = [
        Comparison(prompt=i["prompt"], chosen=i["response_a"], rejected=i["response_b"]) for i in items[:64]
    ]
    metrics = train(config, examples=examples, output_dir=files.absolute(run.output_dir))
    run.status, run.finished_at, run.metrics = RunStatus.SUCCEEDED, timezone.now(), metrics
    run.config = config.to_dict()
    run.save()
    services.training_run_activate(run=run)
    token = staff_token()

    # Real prompts and responses (LLMBar outputs), the same ones on both sides.
    prompts = [i["prompt"] for i in items]
    pool = [i[side] for i in items for side in ("response_a", "response_b")]
    model_dir = files.absolute(run.output_dir)
    scorer = RewardScorer(model_dir, device="cpu", batch_size=64)  # for the equality check only
    # The in-process side runs in a fresh process of its own, as the web worker is one: this process
    # trained a model, and its heap is not a fair place to time the forward pass (it measured 15-25%
    # slower here than a fresh process, at batch 64).
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    baseline = context.Process(target=_score_in_process, args=(str(model_dir), theirs), daemon=True)
    baseline.start()
    assert ours.recv() == "ready"

    def in_process(prompt: str, responses: list[str]) -> float:
        ours.send((prompt, responses))
        return ours.recv()  # the seconds that RewardScorer.score took in that process

    rows = []
    with gunicorn(env, "--workers", "1", "--worker-class", "sync") as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        headers = {"Content-Type": "application/json", "Authorization": f"Token {token}"}

        def http_score(prompt: str, responses: list[str]) -> list[float]:
            body = json.dumps({"project": project.slug, "prompt": prompt, "responses": responses})
            conn.request("POST", "/api/v1/score/", body=body, headers=headers)
            response = conn.getresponse()
            data = json.loads(response.read())
            assert response.status == 200, data
            return data["scores"]

        http_score(prompts[0], pool[:2])  # the server loads the model (not timed)
        for batch in (16, 64):
            inputs = [
                (prompts[k % len(prompts)], [pool[(k * batch + j) % len(pool)] for j in range(batch)])
                for k in range(len(prompts))
            ]
            # Same inputs, same scores: the server's model is the saved one.
            served, direct = http_score(*inputs[0]), scorer.score(*inputs[0])
            assert max(abs(a - b) for a, b in zip(served, direct, strict=True)) < 1e-4
            # Interleaved call by call, the same input to both sides in turn, so that whatever else the
            # machine does (it is shared) falls on both alike; each side's time is the sum of its calls.
            spent = {"in process": 0.0, "/score": 0.0}
            calls, started = 0, time.perf_counter()
            while time.perf_counter() - started < args.seconds:
                spent["in process"] += in_process(*inputs[calls % len(inputs)])
                before = time.perf_counter()
                http_score(*inputs[calls % len(inputs)])
                spent["/score"] += time.perf_counter() - before
                calls += 1
            served_rate = calls * batch / spent["/score"]
            baseline_rate = calls * batch / spent["in process"]
            rows.append((batch, served_rate, baseline_rate))
            print(
                f"batch {batch}: {calls} calls each; /score {served_rate:.2f}/s, "
                f"in process {baseline_rate:.2f}/s"
            )
        conn.close()
    ours.send(None)
    baseline.join(timeout=30)

    lines = [
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, no GPU; Python {platform.python_version()}. "
        f"MiniLM reward model, max_length {args.max_length}, LLMBar responses; gunicorn 1 sync worker, one "
        "keep-alive client; calls interleaved one by one (same inputs), "
        f"{args.seconds:.0f} s per batch size.",
        "",
        "| batch | /score responses/s | RewardScorer in a process of its own | /score ÷ in process |",
        "| ---: | ---: | ---: | ---: |",
        *(f"| {b} | {h:.1f} | {p:.1f} | **{h / p:.0%}** |" for b, h, p in rows),
    ]
    print("\n".join(lines))
    if args.results:
        title = "# /score vs RewardScorer in process\n\n"
        args.results.write_text(title + "\n".join(lines) + "\n", encoding="utf-8")


def _score_in_process(model_dir: str, pipe: Any) -> None:
    """The baseline: RewardScorer in a process that does nothing else; answers each call's seconds."""
    from rm_training.scoring import RewardScorer

    scorer = RewardScorer(model_dir, device="cpu", batch_size=64)
    pipe.send("ready")
    while (task := pipe.recv()) is not None:
        started = time.perf_counter()
        scorer.score(*task)
        pipe.send(time.perf_counter() - started)


if __name__ == "__main__":
    main()
