"""Training at the sizes teams use: LoRA (peft) on a decoder, padding-free batches, sharded training (FSDP2
on CPU processes with gloo), the batch chosen for the data's size, and out of memory as a failure of one
line. Tiny Qwen2-shaped models built from a config; nothing downloaded."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

from rm_training.collate import packed_inputs
from rm_training.config import TrainingConfig
from rm_training.errors import InputError
from rm_training.evaluate import SCORE_CHECK_FILENAME, compute_rewards, score_check
from rm_training.metrics import TrainingMetrics
from rm_training.model import ADAPTER_DIRNAME, add_lora, load_reward_model, load_tokenizer
from rm_training.scoring import RewardScorer
from rm_training.tokenization import PairEncoder
from rm_training.train import OutOfMemory, _batch_size, _micro_batch_loss, train

from .conftest import marker_comparisons, write_jsonl


def qwen2_config(directory: Path, **changes: object) -> TrainingConfig:
    values = {
        "base_model": str(directory),
        "max_length": 48,
        "epochs": 2,
        "batch_size": 16,
        "min_steps": 0,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.05,
        "eval_fraction": 0.2,
        "device": "cpu",
        "logging_steps": 1,
        "bf16": False,
    }
    return TrainingConfig.from_dict(values | changes)


def plain_scores(directory: Path) -> tuple[list[float], list[float]]:
    """The scores recorded at the end of the run, and those that plain transformers gives the saved
    directory (no rm_training loader), encoding as the run did."""
    items = json.loads((directory / SCORE_CHECK_FILENAME).read_text())
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(directory, local_files_only=True).eval()
    encoder = PairEncoder(tokenizer, 48)
    sequences = encoder.encode([i["prompt"] for i in items], [i["response"] for i in items])
    rewards = compute_rewards(model, encoder, sequences, batch_size=8, device=torch.device("cpu"))
    return [i["score"] for i in items], rewards.tolist()


@pytest.fixture(scope="module")
def lora_run(tiny_qwen2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("lora") / "model"
    config = qwen2_config(tiny_qwen2_dir, lora_r=4, lora_alpha=8, epochs=3)
    metrics = train(config, examples=marker_comparisons(96), output_dir=output)
    return output, metrics


def test_lora_trains_and_the_saved_model_loads_in_plain_transformers_with_the_same_scores(
    lora_run: tuple[Path, dict],
) -> None:
    output, metrics = lora_run
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert metrics["eval_accuracy"] > 0.6
    recorded, reloaded = plain_scores(output)
    assert reloaded == pytest.approx(recorded, abs=1e-4)
    assert len(set(recorded)) > 1  # a head lost on reload (TRL #1379) would give the same score to all
    assert score_check(RewardScorer(output, device="cpu"), output) == []


def test_lora_changes_only_the_adapted_layers_and_the_head(
    lora_run: tuple[Path, dict], tiny_qwen2_dir: Path
) -> None:
    output, metrics = lora_run
    base = load_file(tiny_qwen2_dir / "model.safetensors")
    merged = load_file(output / "model.safetensors")
    adapter = load_file(output / ADAPTER_DIRNAME / "adapter_model.safetensors")
    scale = 8 / 4
    adapted = 0
    for name, weight in base.items():
        saved = merged[f"model.{name}"]
        lora_a = next(
            (v for k, v in adapter.items() if k.endswith(f"model.{name[: -len('.weight')]}.lora_A.weight")),
            None,
        )
        if lora_a is None:
            # Embeddings, norms and biases: not trained at all.
            assert torch.equal(saved, weight), name
        else:
            lora_b = next(
                v for k, v in adapter.items() if k.endswith(f"model.{name[: -len('.weight')]}.lora_B.weight")
            )
            assert not torch.equal(saved, weight), name
            torch.testing.assert_close(saved - weight, scale * lora_b @ lora_a, atol=1e-5, rtol=1e-4)
            adapted += 1
    assert adapted == 2 * 7  # q, k, v, o, gate, up and down of each of the 2 layers
    assert set(merged) - {f"model.{name}" for name in base} == {"score.weight"}
    assert metrics["trainable_parameters"] < metrics["parameters"] / 3


def test_the_merged_model_and_the_adapter_give_the_same_scores(
    lora_run: tuple[Path, dict], tiny_qwen2_dir: Path
) -> None:
    output, _ = lora_run
    tokenizer = load_tokenizer(str(output))
    merged = AutoModelForSequenceClassification.from_pretrained(output, local_files_only=True).eval()
    base = load_reward_model(str(tiny_qwen2_dir), tokenizer)
    adapted = PeftModel.from_pretrained(base, output / ADAPTER_DIRNAME).eval()
    encoder = PairEncoder(tokenizer, 48)
    sequences = encoder.encode(["a question"] * 3, ["river stone excellent", "quiet garden", "the the the"])
    cpu = torch.device("cpu")
    merged_scores = compute_rewards(merged, encoder, sequences, batch_size=3, device=cpu)
    adapter_scores = compute_rewards(adapted, encoder, sequences, batch_size=3, device=cpu)
    torch.testing.assert_close(merged_scores, adapter_scores, atol=1e-5, rtol=1e-5)


def test_lora_target_modules_narrow_the_adapters(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    config = qwen2_config(tiny_qwen2_dir, lora_r=2, lora_target_modules="q_proj,v_proj", epochs=1)
    train(config, examples=marker_comparisons(40), output_dir=tmp_path / "m")
    adapter = load_file(tmp_path / "m" / ADAPTER_DIRNAME / "adapter_model.safetensors")
    layers = {key.split(".lora_")[0].rsplit(".", 1)[-1] for key in adapter if ".lora_" in key}
    assert layers == {"q_proj", "v_proj"}
    with pytest.raises(InputError, match=r"lora_target_modules 'c_attn'.*no layer"):
        train(
            qwen2_config(tiny_qwen2_dir, lora_r=2, lora_target_modules="c_attn"),
            examples=marker_comparisons(40),
            output_dir=tmp_path / "n",
        )


def test_padding_free_batches_give_the_padded_loss_and_gradients(tiny_qwen2_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_qwen2_dir))
    encoder = PairEncoder(tokenizer, 48)
    pairs = encoder.encode_pairs(marker_comparisons(6))
    assert len({p.length for p in pairs}) > 1  # sequences of different lengths: the padded batch pads
    results = []
    for padding_free in (False, True):
        torch.manual_seed(0)
        model = load_reward_model(str(tiny_qwen2_dir), tokenizer, disable_dropout=True)
        config = qwen2_config(tiny_qwen2_dir, padding_free=padding_free)
        loss = _micro_batch_loss(model, encoder, pairs, config, torch.device("cpu"), normalizer=6.0)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results
    torch.testing.assert_close(packed_loss, padded_loss, atol=1e-5, rtol=1e-5)
    assert padded_grads.keys() == packed_grads.keys()
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_a_padding_free_run_follows_the_padded_run_and_saves_a_padded_scorer(
    tiny_qwen2_dir: Path, tmp_path: Path
) -> None:
    runs = {
        padding_free: train(
            qwen2_config(tiny_qwen2_dir, padding_free=padding_free),
            examples=marker_comparisons(64),
            output_dir=tmp_path / str(padding_free),
        )
        for padding_free in (False, True)
    }
    padded = [entry["loss"] for entry in runs[False]["log"]]
    packed = [entry["loss"] for entry in runs[True]["log"]]
    assert packed == pytest.approx(padded, abs=1e-4)
    recorded, reloaded = plain_scores(tmp_path / "True")
    assert reloaded == pytest.approx(recorded, abs=1e-4)


def test_the_collator_packs_sequences_end_to_end_with_positions_restarting() -> None:
    inputs = packed_inputs([[5, 6, 7], [8], [9, 10]])
    assert inputs["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10]]
    assert inputs["position_ids"].tolist() == [[0, 1, 2, 0, 0, 1]]
    assert inputs["sequence_ends"].tolist() == [2, 3, 5]


def test_padding_free_is_refused_in_one_line_for_a_model_that_cannot_keep_sequences_apart(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    config = qwen2_config(tiny_bert_dir, padding_free=True)
    with pytest.raises(
        InputError, match=r"^padding_free: BertForSequenceClassification is not a decoder"
    ) as refused:
        train(config, examples=marker_comparisons(40), output_dir=tmp_path / "m")
    assert "\n" not in str(refused.value)


def test_out_of_memory_fails_the_run_with_one_line_naming_the_settings(
    fast_config: TrainingConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(BertForSequenceClassification, "forward", out_of_memory)
    with pytest.raises(OutOfMemory) as failed:
        train(fast_config, examples=marker_comparisons(40), output_dir=tmp_path / "m")
    line = str(failed.value)
    assert "\n" not in line and line.startswith("out of cpu memory with batch_size 16, max_length 48")
    for setting in ("lower batch_size or max_length", "gradient_checkpointing", "lora_r", "fsdp"):
        assert setting in line
    assert isinstance(failed.value, InputError)  # the CLI exits 2 with an error event of that line
    assert not (tmp_path / "m").exists()


def test_out_of_memory_is_an_error_line_and_exit_status_2_from_the_cli(
    fast_config: TrainingConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rm_training import progress
    from rm_training.cli import main

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(BertForSequenceClassification, "forward", out_of_memory)
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [{"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected} for c in marker_comparisons(40)],
    )
    (tmp_path / "c.json").write_text(json.dumps(fast_config.to_dict()))
    status = main(["train", "--data", str(data), "--output", str(tmp_path / "m"), "--config",
                   str(tmp_path / "c.json"), "--progress-jsonl"])  # fmt: skip
    assert status == progress.INPUT_ERROR_STATUS
    captured = capsys.readouterr()
    events = [progress.parse(line) for line in captured.out.splitlines()]
    assert isinstance(events[-1], progress.Error) and events[-1].message.startswith("out of cpu memory")
    (line,) = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert line == f"error: {events[-1].message}"


@pytest.mark.parametrize(
    ("pairs", "epochs", "expected"),
    [
        (1620, 1, 8),  # 1,800 pairs less 10% held out: 50 steps at 32, 202 at 8
        (3200, 1, 16),
        (6400, 1, 32),
        (1620, 4, 32),  # 4 epochs of 51 steps at 32: enough
        (100, 1, 8),  # never below 8, however small
    ],
)
def test_the_batch_is_halved_until_the_run_makes_min_steps(pairs: int, epochs: int, expected: int) -> None:
    config = TrainingConfig(epochs=epochs)
    assert _batch_size(config, pairs, micro_batches=1) == expected
    assert _batch_size(TrainingConfig(epochs=epochs, min_steps=0), pairs, micro_batches=1) == 32
    assert _batch_size(TrainingConfig(batch_size=12), 100, micro_batches=1) == 12  # 6 would be below 8


def test_a_run_records_its_steps_and_batch_in_metrics_and_model_card(
    fast_config: TrainingConfig, tmp_path: Path
) -> None:
    config = TrainingConfig.from_dict(fast_config.to_dict() | {"epochs": 1, "min_steps": 10})
    metrics = train(config, examples=marker_comparisons(80), output_dir=tmp_path / "m")
    assert metrics["batch_size"] == 8 and metrics["steps"] == 8  # 64 training pairs: 4 steps at 16
    assert metrics["train_tokens_per_second"] > 0
    assert metrics["mfu"] is None and metrics["peak_memory_bytes"] is None  # a CPU: not measured
    assert TrainingMetrics.load(tmp_path / "m").batch_size == 8
    assert "8 optimizer steps of 8 pairs each" in (tmp_path / "m" / "README.md").read_text()


def test_fsdp_on_two_processes_follows_one_process_and_saves_the_same_model(
    tiny_qwen2_dir: Path, tmp_path: Path
) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    config = qwen2_config(tiny_qwen2_dir, fsdp=True, epochs=1, gradient_checkpointing=True)
    data = write_jsonl(
        tmp_path / "prefs.jsonl",
        [{"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected} for c in marker_comparisons(64)],
    )
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "rm_training", "train", "--data", str(data),
         "--output", str(tmp_path / "fsdp"), "--config", str(tmp_path / "config.json"), "--no-progress-bar"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sharded = json.loads((tmp_path / "fsdp" / "metrics.json").read_text())
    single = train(config, data_path=data, output_dir=tmp_path / "single")

    assert sharded["processes"] == 2 and single["processes"] == 1
    assert [e["loss"] for e in sharded["log"]] == pytest.approx([e["loss"] for e in single["log"]], abs=2e-4)
    saved, expected = (
        load_file(tmp_path / "fsdp" / "model.safetensors"),
        load_file(tmp_path / "single" / "model.safetensors"),
    )
    assert saved.keys() == expected.keys()
    for name, weight in expected.items():
        torch.testing.assert_close(saved[name], weight, atol=2e-4, rtol=1e-3, msg=name)
    recorded, reloaded = plain_scores(tmp_path / "fsdp")
    assert reloaded == pytest.approx(recorded, abs=1e-4)


def test_a_run_without_lora_may_overwrite_a_lora_run(lora_run: tuple[Path, dict], tmp_path: Path) -> None:
    output = tmp_path / "model"
    shutil.copytree(lora_run[0], output)
    config = qwen2_config(Path(TrainingConfig.load(output).base_model), epochs=1)
    train(config, examples=marker_comparisons(40), output_dir=output, overwrite=True)
    assert not (output / ADAPTER_DIRNAME).exists()
    assert TrainingConfig.load(output).lora_r == 0


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        # a typo beside a real name was dropped without a word: the run adapted q_proj alone
        ("q_proj,v_prj", r"lora_target_modules 'v_prj': no layer of Qwen2ForSequenceClassification"),
        # the head is trained in full; naming it beside a real name was dropped without a word too
        ("q_proj,score", r"lora_target_modules 'score': .*reward head.* trained in full"),
        ("score", r"lora_target_modules 'score': .*reward head.* trained in full"),
        # peft refuses layers it cannot adapt with a traceback (exit status 1): one line instead
        (
            "q_proj,input_layernorm",
            r"lora_target_modules 'input_layernorm': Qwen2RMSNorm is not a linear layer",
        ),
        ("mlp", r"lora_target_modules 'mlp': Qwen2MLP is not a linear layer"),
    ],
)
def test_each_lora_target_module_must_name_a_layer_of_the_base_model(
    tiny_qwen2_dir: Path, targets: str, message: str
) -> None:
    config = qwen2_config(tiny_qwen2_dir, lora_r=2, lora_target_modules=targets)
    with pytest.raises(InputError, match=message):
        add_lora(load_reward_model(config.base_model, load_tokenizer(config.base_model)), config)


def test_out_of_memory_names_the_batch_the_run_used_when_min_steps_lowered_it(
    fast_config: TrainingConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With min_steps the run may train at a smaller batch than batch_size; the line named batch_size as
    given (32), so lowering it to 16 as told changed nothing: the run was at 8 already."""

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(BertForSequenceClassification, "forward", out_of_memory)
    config = dataclasses.replace(fast_config, batch_size=32, min_steps=1000)
    with pytest.raises(
        OutOfMemory, match=r"^out of cpu memory with batch_size 8 \(min_steps' choice; 32 given\)"
    ):
        train(config, examples=marker_comparisons(40), output_dir=tmp_path / "m")
