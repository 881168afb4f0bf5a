"""Fixtures for the trainer's tests: tiny models built from a config, tokenizers made offline, and
synthetic preference data. Nothing here touches a database, a network or ../shared."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForSequenceClassification,
    Qwen2Tokenizer,
)

from rm_training.config import TrainingConfig
from rm_training.data import Comparison
from rm_training.model import DEFAULT_BASE_MODEL, resolve_base_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = [
    "the",
    "a",
    "river",
    "stone",
    "cloud",
    "garden",
    "quiet",
    "music",
    "window",
    "paper",
    "light",
    "winter",
    "morning",
    "bread",
    "table",
    "simple",
    "answer",
    "question",
    "story",
    "small",
    "large",
    "green",
    "blue",
    "travel",
    "friend",
    "letter",
    "number",
    "reason",
    "careful",
    "bright",
]
MARKER = "excellent"


@pytest.fixture(scope="session")
def bert_tokenizer() -> PreTrainedTokenizerFast:
    """The BERT tokenizer that the MiniLM package ships, loaded from the installed package."""
    return AutoTokenizer.from_pretrained(resolve_base_model(DEFAULT_BASE_MODEL), local_files_only=True)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, bert_tokenizer: PreTrainedTokenizerFast) -> Path:
    """A 2-layer, 32-wide BERT (random weights) with the MiniLM tokenizer, saved as a base model."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=bert_tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertForSequenceClassification(config).bert.save_pretrained(directory)
    bert_tokenizer.save_pretrained(directory)
    return directory


def word_level_tokenizer() -> PreTrainedTokenizerFast:
    """A GPT-2-style decoder tokenizer made here (no hub): no pad token of its own, so pad = EOS."""
    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(
        [" ".join([*WORDS, MARKER, "good", "bad"])],
        trainers.WordLevelTrainer(special_tokens=["<unk>", "<eos>"]),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<eos>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide GPT-2 whose tokenizer has no pad token (it will be EOS), saved as a base model."""
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = word_level_tokenizer()
    eos = tokenizer.eos_token_id
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=eos,
        eos_token_id=eos,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    GPT2ForSequenceClassification(config).transformer.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_qwen2(directory: Path) -> Path:
    """A 2-layer, 32-wide Qwen2 (grouped-query attention, rotary positions, sdpa on CPU) with a tokenizer
    made here, saved as a base model into ``directory``: the shape of the decoders teams train reward
    models from."""
    # transformers 5 loads a qwen2 directory's tokenizer as Qwen2Tokenizer whatever its files say, so this
    # one is a byte-level BPE, as Qwen2's is.
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(
        [" ".join([*WORDS, MARKER, "question", "0123456789"])] * 3,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    model = json.loads(backend.to_str())["model"]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=[tuple(merge) for merge in model["merges"]])
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    Qwen2ForSequenceClassification(config).model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


def marker_comparisons(n: int, *, seed: int = 0) -> list[Comparison]:
    """Pairs whose chosen response contains the marker word and rejected does not; otherwise alike."""
    rng = random.Random(seed)
    comparisons = []
    for i in range(n):
        prompt = f"question {i} " + " ".join(rng.choices(WORDS, k=rng.randint(3, 8)))
        body = rng.choices(WORDS, k=rng.randint(4, 10))
        at = rng.randrange(len(body) + 1)
        chosen = " ".join([*body[:at], MARKER, *body[at:]])
        rejected = " ".join([*body[:at], rng.choice(WORDS), *body[at:]])
        comparisons.append(Comparison(prompt=prompt, chosen=chosen, rejected=rejected, pair_id=str(i)))
    return comparisons


@pytest.fixture
def fast_config(tiny_bert_dir: Path) -> TrainingConfig:
    """Settings that train the tiny BERT in a few seconds on a CPU."""
    return TrainingConfig(
        base_model=str(tiny_bert_dir),
        max_length=48,
        epochs=3,
        batch_size=16,
        min_steps=0,  # the batch as given: the tests count steps and compare runs at a batch
        learning_rate=3e-3,
        warmup_ratio=0.05,
        eval_fraction=0.2,
        device="cpu",
        logging_steps=1,
        # float32 everywhere, so the tests behave alike on CPUs with and without native bf16
        bf16=False,
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as a JSON Lines file, for the readers under test."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# A Qwen2-style chat template (ChatML), written here: each message in <|im_start|>role ... <|im_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT_CONTROL_TOKENS = ["<|im_start|>", "<|im_end|>"]


def chat_tokenizer() -> PreTrainedTokenizerFast:
    """A Qwen2-shaped chat tokenizer made here: word-level, a pad token of its own, ChatML's control tokens
    and a chat template."""
    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(
        [
            " ".join(
                [
                    *WORDS,
                    MARKER,
                    "good",
                    "bad",
                    "system",
                    "user",
                    "assistant",
                    "question",
                    *map(str, range(100)),
                ]
            )
        ],
        trainers.WordLevelTrainer(special_tokens=["<unk>", "<|endoftext|>", *CHAT_CONTROL_TOKENS]),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def tiny_chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide Llama decoder (random weights) with the chat tokenizer, saved as a base model.
    Llama-shaped, not Qwen2: transformers loads a directory whose config says qwen2 with its Qwen2Tokenizer,
    which rebuilds a byte-level tokenizer that this word-level one is not."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    directory = tmp_path_factory.mktemp("tiny-chat")
    tokenizer = chat_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    LlamaForSequenceClassification(config).model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
