"""DDP: two CPU processes (gloo) under torchrun follow the single-process loss curve at the same
global batch, through the same entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rm_training.config import TrainingConfig
from rm_training.train import train

from .conftest import marker_comparisons


def test_two_processes_follow_the_single_process_loss_curve(
    fast_config: TrainingConfig, tmp_path: Path
) -> None:
    config = TrainingConfig.from_dict(fast_config.to_dict() | {"epochs": 2, "batch_size": 16})
    data = tmp_path / "prefs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected}) + "\n"
            for c in marker_comparisons(96)
        ),
        encoding="utf-8",
    )
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    result = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "rm_training",
            "train",
            "--data",
            str(data),
            "--output",
            str(tmp_path / "ddp"),
            "--config",
            str(tmp_path / "config.json"),
            "--no-progress-bar",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    single = train(config, data_path=data, output_dir=tmp_path / "single")

    assert distributed["processes"] == 2 and single["processes"] == 1
    assert [e["step"] for e in distributed["log"]] == [e["step"] for e in single["log"]]
    ddp_curve = [e["loss"] for e in distributed["log"]]
    single_curve = [e["loss"] for e in single["log"]]
    assert ddp_curve == pytest.approx(single_curve, abs=2e-4)
    assert distributed["eval_accuracy"] == pytest.approx(single["eval_accuracy"], abs=0.02)
