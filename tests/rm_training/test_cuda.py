"""The trainer on a CUDA GPU: bf16 training with its speed figures, padding-free batches on the GPU's
attention kernels, LoRA, and a real out-of-memory failure. Skipped without CUDA; bench/gpu/run.py runs them
on the GPU machine. Tiny models, as everywhere in the suite."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rm_training.config import TrainingConfig
from rm_training.model import load_reward_model, load_tokenizer
from rm_training.tokenization import PairEncoder
from rm_training.train import OutOfMemory, _micro_batch_loss, train

from .conftest import marker_comparisons

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
]


def cuda_config(directory: Path, **changes: object) -> TrainingConfig:
    values = {
        "base_model": str(directory),
        "max_length": 48,
        "epochs": 2,
        "batch_size": 16,
        "min_steps": 0,
        "learning_rate": 3e-3,
        "eval_fraction": 0.2,
        "device": "cuda",
        "logging_steps": 1,
    }
    return TrainingConfig.from_dict(values | changes)


@pytest.mark.parametrize(
    "changes", [{}, {"padding_free": True}, {"lora_r": 4}], ids=["padded", "packed", "lora"]
)
def test_a_bf16_run_on_the_gpu_learns_and_reports_its_speed(
    tiny_qwen2_dir: Path, tmp_path: Path, changes: dict[str, object]
) -> None:
    metrics = train(
        cuda_config(tiny_qwen2_dir, **changes), examples=marker_comparisons(96), output_dir=tmp_path / "m"
    )
    assert metrics["device"] == "cuda" and metrics["bf16"] is True
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert metrics["train_tokens_per_second"] > 0
    assert metrics["peak_memory_bytes"] > 0
    # MFU is measured where the GPU's peak is known (H100, H200, A100, ...).
    assert metrics["mfu"] is None or 0 < metrics["mfu"] < 1


def test_padding_free_equals_padded_on_the_gpu_in_float32(tiny_qwen2_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_qwen2_dir))
    encoder = PairEncoder(tokenizer, 48)
    pairs = encoder.encode_pairs(marker_comparisons(8))
    device = torch.device("cuda")
    losses = []
    for padding_free in (False, True):
        model = load_reward_model(str(tiny_qwen2_dir), tokenizer, device, disable_dropout=True)
        config = cuda_config(tiny_qwen2_dir, padding_free=padding_free, bf16=False)
        losses.append(float(_micro_batch_loss(model, encoder, pairs, config, device, normalizer=8.0)))
    assert losses[1] == pytest.approx(losses[0], abs=1e-4)


def test_running_out_of_gpu_memory_fails_the_run_in_one_line(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1e-6)  # a real allocation failure, at the first tensors
    try:
        with pytest.raises(OutOfMemory) as failed:
            train(cuda_config(tiny_qwen2_dir), examples=marker_comparisons(40), output_dir=tmp_path / "m")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert str(failed.value).startswith("out of cuda memory with batch_size 16") and "\n" not in str(
        failed.value
    )
