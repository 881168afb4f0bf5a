"""Benchmark: the overhead of the training path (REST API -> Celery on Redis -> worker -> trainer child
process, with its snapshot, heartbeat and progress writes) against the bare CLI on the same data.

The same judgments (the LLMBar pairs, three imported raters each) are trained the same way by both:
through the path, timed from the POST until the run's row says succeeded (the snapshot, the queue, the
child's start, the row writes all count); and by ``python -m rm_training train`` on a snapshot file with
the same bytes and the run's own config file, timed as a process. Runs alternate (CLI, path, path, CLI
by default) so that drift on a shared machine falls on both alike.

    .venv/bin/python bench/training_path/run.py [--pairs 600] [--epochs 1] [--max-length 192] \
        [--database-url postgres://postgres@127.0.0.1:5432/pairwise_bench] [--broker redis://127.0.0.1:6379/9]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (
    PYTHON,
    REPO,
    bench_env,
    celery_worker,
    gunicorn,
    judged_project,
    llmbar_items,
    post_json,
    setup_django,
    staff_token,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--order", default="cli,path,path,cli", help="comma-separated: cli, path")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/pairwise_h11")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--results", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-path-"))
    env = bench_env(args.database_url, args.broker, work / "runs")
    setup_django()
    from reward_models import files, services
    from reward_models.models import RunStatus, TrainingRun

    slug = f"bench-path-{int(time.time())}"
    project = judged_project(slug, llmbar_items(args.pairs))
    settings = {"epochs": args.epochs, "max_length": args.max_length, "batch_size": args.batch_size,
                "eval_fraction": 0.2, "seed": 42}  # fmt: skip
    reference = services.snapshot_create(project=project)
    config_file = work / "config.json"
    config_file.write_text(
        json.dumps(services.training_config_build(settings).to_dict() | {"progress_bar": False})
    )
    token = staff_token()

    times: dict[str, list[float]] = {"cli": [], "path": []}
    phases = []
    with gunicorn(env, "--workers", "1") as (port, _), celery_worker(env, "training", work / "worker.log"):
        for index, kind in enumerate(args.order.split(",")):
            if kind == "cli":
                output = work / f"cli-{index}"
                started = time.perf_counter()
                subprocess.run(
                    [PYTHON, "-m", "rm_training", "train", "--data", str(files.absolute(reference.file)),
                     "--output", str(output), "--config", str(config_file)],
                    cwd=REPO, env=env, check=True, capture_output=True,
                )  # fmt: skip
                times["cli"].append(time.perf_counter() - started)
                shutil.rmtree(output)
            else:
                started = time.perf_counter()
                status, created = post_json(
                    port, "/api/v1/training-runs/", {"project": slug, **settings}, token
                )
                assert status == 201, created
                while True:
                    run = TrainingRun.objects.select_related("snapshot").get(pk=created["id"])
                    if run.is_finished:
                        break
                    time.sleep(0.1)
                times["path"].append(time.perf_counter() - started)
                assert run.status == RunStatus.SUCCEEDED, run.error
                assert run.snapshot.sha256 == reference.sha256  # the same bytes as the CLI's file
                phases.append(
                    {
                        "queued_s": (run.started_at - run.created_at).total_seconds(),
                        "running_s": (run.finished_at - run.started_at).total_seconds(),
                        "trainer_runtime_s": run.metrics["runtime_seconds"],
                        "steps": run.metrics["steps"],
                    }
                )
            print(f"{kind}: {times[kind][-1]:.1f} s", flush=True)

    cli, path = statistics.mean(times["cli"]), statistics.mean(times["path"])
    lines = [
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, no GPU; Python {platform.python_version()}.",
        f"Data: {args.pairs} LLMBar pairs, 3 judgments each ({reference.rows} rows, "
        f"{reference.size_bytes / 2**20:.1f} MiB snapshot); MiniLM, {args.epochs} epoch(s), max_length "
        f"{args.max_length}, batch {args.batch_size}, {phases[0]['steps'] if phases else '?'} steps.",
        f"Order: {args.order}.",
        "",
        "| | wall time per run (s) | mean (s) |",
        "| --- | --- | ---: |",
        f"| bare CLI | {', '.join(f'{t:.1f}' for t in times['cli'])} | {cli:.1f} |",
        f"| API + Celery + worker | {', '.join(f'{t:.1f}' for t in times['path'])} | {path:.1f} |",
        f"| **path / CLI** | | **{path / cli:.3f}** ({(path / cli - 1) * 100:+.1f}%) |",
        "",
        "Path phases (s): "
        + "; ".join(
            f"queued {p['queued_s']:.2f}, running {p['running_s']:.1f} (trainer's own runtime "
            f"{p['trainer_runtime_s']:.1f})"
            for p in phases
        ),
    ]
    print("\n".join(lines))
    if args.results:
        args.results.write_text("# Training path vs bare CLI\n\n" + "\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
