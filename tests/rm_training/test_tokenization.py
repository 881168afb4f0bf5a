"""The (prompt, response) format, truncation that keeps the response, the collator, length grouping,
and reading the score at the last real token of a decoder whose pad token is its EOS."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from rm_training import tokenization
from rm_training.data import Comparison
from rm_training.evaluate import compute_rewards
from rm_training.model import load_reward_model, load_tokenizer
from rm_training.tokenization import EncodedPair, EncodedSequence, PairEncoder, length_grouped_batches

from .conftest import word_level_tokenizer


def test_a_long_prompt_is_cut_from_the_left_and_the_response_kept(
    bert_tokenizer: PreTrainedTokenizerFast,
) -> None:
    encoder = PairEncoder(bert_tokenizer, max_length=32)
    prompt = " ".join(f"word{i}" for i in range(500)) + " final question"
    (sequence,) = encoder.encode([prompt], ["the complete answer stays"])
    text = bert_tokenizer.decode(sequence.input_ids)
    assert len(sequence.input_ids) == 32
    assert text.startswith("[CLS]") and text.endswith("final question [SEP] the complete answer stays [SEP]")
    assert sequence.prompt_truncated and not sequence.response_truncated
    # The response is segment B, as the pair template says.
    assert sequence.token_type_ids[-5:] == [1, 1, 1, 1, 1]


def test_an_overlong_response_is_cut_at_its_end_leaving_part_of_the_prompt(
    bert_tokenizer: PreTrainedTokenizerFast,
) -> None:
    encoder = PairEncoder(bert_tokenizer, max_length=35)  # 32 tokens of text after [CLS] [SEP] [SEP]
    prompt = " ".join(["ask"] * 20)
    response = "start " + " ".join(["blah"] * 100)
    (sequence,) = encoder.encode([prompt], [response])
    assert len(sequence.input_ids) == 35
    assert sequence.prompt_truncated and sequence.response_truncated
    assert sequence.token_type_ids.count(0) - 2 == 8  # a quarter of the budget stays with the prompt
    assert bert_tokenizer.decode(sequence.input_ids).split("[SEP]")[1].strip().startswith("start")


def test_a_pair_that_fits_is_not_truncated(bert_tokenizer: PreTrainedTokenizerFast) -> None:
    encoder = PairEncoder(bert_tokenizer, max_length=64)
    (sequence,) = encoder.encode(["short prompt"], ["short answer"])
    assert bert_tokenizer.decode(sequence.input_ids) == "[CLS] short prompt [SEP] short answer [SEP]"
    assert not sequence.prompt_truncated and not sequence.response_truncated


def test_collate_pads_chosen_then_rejected_into_one_batch(bert_tokenizer: PreTrainedTokenizerFast) -> None:
    encoder = PairEncoder(bert_tokenizer, max_length=16)
    pairs = [
        EncodedPair(
            Comparison(prompt="p", chosen="c", rejected="r", target=0.75, weight=4.0, margin=2.0),
            EncodedSequence([101, 7, 102, 8, 9, 102], [0, 0, 0, 1, 1, 1], False, False),
            EncodedSequence([101, 7, 102, 5, 102], [0, 0, 0, 1, 1], False, False),
        ),
        EncodedPair(
            Comparison(prompt="q", chosen="c", rejected="r", tie=True, target=0.5),
            EncodedSequence([101, 3, 102, 4, 102], [0, 0, 0, 1, 1], False, False),
            EncodedSequence([101, 3, 102, 6, 6, 6, 102], [0, 0, 0, 1, 1, 1, 1], False, False),
        ),
    ]
    batch = encoder.collate(pairs)
    # The model's inputs and nothing else, so that model(**batch.inputs) is the forward pass.
    assert set(batch.inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert batch.inputs["input_ids"].tolist() == [
        [101, 7, 102, 8, 9, 102, 0],
        [101, 3, 102, 4, 102, 0, 0],
        [101, 7, 102, 5, 102, 0, 0],
        [101, 3, 102, 6, 6, 6, 102],
    ]
    assert batch.inputs["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 1],
    ]
    assert batch.inputs["token_type_ids"][0].tolist() == [0, 0, 0, 1, 1, 1, 0]
    assert batch.targets.target.tolist() == [0.75, 0.5]
    assert batch.targets.weight.tolist() == [4.0, 1.0]
    assert batch.targets.margin.tolist() == [2.0, 0.0]
    assert batch.targets.tie.tolist() == [False, True]
    moved = batch.to(torch.device("cpu"))
    assert set(moved.inputs) == set(batch.inputs) and moved.targets.tie.dtype == torch.bool


def test_a_decoder_batch_has_no_segment_ids(tiny_gpt2_dir: Path) -> None:
    encoder = PairEncoder(load_tokenizer(str(tiny_gpt2_dir)), max_length=32)
    batch = encoder.collate(encoder.encode_pairs([Comparison(prompt="river", chosen="good", rejected="bad")]))
    assert set(batch.inputs) == {"input_ids", "attention_mask"}
    assert batch.inputs["input_ids"].shape[0] == 2


def test_length_grouped_batches_cover_every_pair_once_and_repeat_by_seed() -> None:
    lengths = [(i * 37) % 101 for i in range(1000)]
    batches = length_grouped_batches(lengths, batch_size=16, seed=3, epoch=1)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert batches == length_grouped_batches(lengths, batch_size=16, seed=3, epoch=1)
    assert batches != length_grouped_batches(lengths, batch_size=16, seed=3, epoch=2)
    # Grouping pads far less than a random batch would: compare the padded tokens.
    padded = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    naive = [list(range(i, min(i + 16, 1000))) for i in range(0, 1000, 16)]
    padded_naive = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in naive)
    assert padded < padded_naive / 5


def test_decoder_with_pad_equal_to_eos_reads_the_last_real_token(tiny_gpt2_dir: Path) -> None:
    """TRL issues #937 and #2758: with pad == EOS a head that looks for the pad token reads a padding
    position, and chosen and rejected get the same score. Ours reads each row's last real token, so the
    scores differ and do not depend on how much padding the batch adds."""
    tokenizer = load_tokenizer(str(tiny_gpt2_dir))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    torch.manual_seed(0)
    model = load_reward_model(str(tiny_gpt2_dir), tokenizer)
    encoder = PairEncoder(tokenizer, max_length=64)
    assert encoder.separator == "\n\n" and not encoder.uses_token_type_ids
    chosen, rejected = encoder.encode(["the question"] * 2, ["a good answer with more words", "bad"])
    batched = compute_rewards(model, encoder, [chosen, rejected], batch_size=2, device=torch.device("cpu"))
    alone = [
        compute_rewards(model, encoder, [s], batch_size=1, device=torch.device("cpu")).item()
        for s in (chosen, rejected)
    ]
    assert batched[0].item() != batched[1].item()
    torch.testing.assert_close(batched, torch.tensor(alone), rtol=1e-5, atol=1e-5)
    assert tokenizer.eos_token_id not in chosen.input_ids + rejected.input_ids  # no EOS appended


def test_sides_that_differ_only_in_case_are_the_same_input_for_an_uncased_tokenizer(
    bert_tokenizer: PreTrainedTokenizerFast,
) -> None:
    encoder = PairEncoder(bert_tokenizer, max_length=64)
    pairs = encoder.encode_pairs(
        [
            Comparison(prompt="Is it?", chosen="YES, it is.", rejected="yes, it is."),
            Comparison(prompt="Name?", chosen="Paris", rejected="paris"),
            Comparison(prompt="Is it?", chosen="Yes, it is.", rejected="No, it is not."),
            Comparison(prompt="Is it?", chosen="yes, it is", rejected="yes, it is."),
        ]
    )
    assert [p.identical for p in pairs] == [True, True, False, False]


def test_sides_whose_difference_truncation_cuts_off_are_the_same_input(
    bert_tokenizer: PreTrainedTokenizerFast,
) -> None:
    common = " ".join(["river"] * 40)
    comparison = Comparison(prompt="q", chosen=common + " good", rejected=common + " bad")
    assert PairEncoder(bert_tokenizer, max_length=32).encode_pairs([comparison])[0].identical
    assert not PairEncoder(bert_tokenizer, max_length=64).encode_pairs([comparison])[0].identical


def test_a_cased_tokenizer_keeps_case_apart() -> None:
    tokenizer = word_level_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    (pair,) = PairEncoder(tokenizer, max_length=32).encode_pairs(
        [Comparison(prompt="q", chosen="River stone", rejected="river stone")]
    )
    assert not pair.identical


class _CountingBackend:
    """Wraps a tokenizers.Tokenizer and records the length of every text given to encode_batch."""

    def __init__(self, backend: object) -> None:
        self.backend = backend
        self.lengths: list[int] = []

    def encode_batch(self, texts: list[str], **kwargs: object) -> object:
        self.lengths.extend(len(t) for t in texts)
        return self.backend.encode_batch(texts, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)


@pytest.mark.parametrize("which", ["bert", "decoder"])
def test_ordinary_long_texts_encode_the_same_cut_and_uncut(
    which: str, bert_tokenizer: PreTrainedTokenizerFast, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer = bert_tokenizer if which == "bert" else word_level_tokenizer()
    if which == "decoder":
        tokenizer.pad_token = tokenizer.eos_token
    encoder = PairEncoder(tokenizer, max_length=24)
    words = ["river", "stone", "garden", "quiet", "morning", "excellent"]
    long = " ".join(words[i % 6] + (" ," if i % 7 == 0 else "") for i in range(700))
    assert len(long) > 3 * encoder.char_cut
    prompts = [long, "short question", long + " final", "  \n".join([long] * 2)]
    responses = [long, long[::-1], "short answer", "\t" + long]
    counting = _CountingBackend(encoder._backend)
    encoder._backend = counting  # type: ignore[assignment]
    cut = encoder.encode(prompts, responses)
    assert max(counting.lengths) <= encoder.char_cut + len(encoder.separator)
    monkeypatch.setattr(tokenization, "CHARS_PER_TOKEN", 10**6)
    assert cut == PairEncoder(tokenizer, max_length=24).encode(prompts, responses)


def test_a_huge_text_is_cut_before_tokenizing_and_a_prompt_tokenized_once(
    bert_tokenizer: PreTrainedTokenizerFast,
) -> None:
    encoder = PairEncoder(bert_tokenizer, max_length=32)
    huge = "stone river " * 200_000  # 2.4 MB
    counting = _CountingBackend(encoder._backend)
    encoder._backend = counting  # type: ignore[assignment]
    sequences = encoder.encode([huge] * 8, [huge] * 8)
    assert all(len(s.input_ids) == 32 and s.prompt_truncated and s.response_truncated for s in sequences)
    # One prompt tokenized once, eight responses, each of at most char_cut characters.
    assert len(counting.lengths) == 9 and max(counting.lengths) <= encoder.char_cut


def test_a_cut_inside_whitespace_that_makes_no_tokens_is_widened(
    bert_tokenizer: PreTrainedTokenizerFast, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = PairEncoder(bert_tokenizer, max_length=16)
    response = "first answer " + " " * (3 * encoder.char_cut) + "later words " * 20
    prompt = "question " * 20 + " " * (3 * encoder.char_cut) + "final ask"
    cut = encoder.encode([prompt], [response])
    monkeypatch.setattr(tokenization, "CHARS_PER_TOKEN", 10**6)
    assert cut == PairEncoder(bert_tokenizer, max_length=16).encode([prompt], [response])
    assert cut[0].response_truncated and cut[0].prompt_truncated


@pytest.mark.parametrize(
    "prompt",
    [
        "What [SEP] is [CLS] this",
        [
            {"role": "user", "content": "Hi [SEP] there"},
            {"role": "assistant", "content": "[CLS] ok"},
            {"role": "user", "content": "q [PAD]"},
        ],
    ],
)
def test_special_tokens_written_in_a_text_are_read_as_text(
    bert_tokenizer: PreTrainedTokenizerFast, prompt: str | list[dict[str, str]]
) -> None:
    # A message (or plain prompt, or response) that says "[SEP]" must not end the prompt's segment, as a
    # chat template's control tokens inside a message do not open a turn (sanitize_control_tokens):
    # without a chat template the tokenizer made the special token itself from the text.
    encoder = PairEncoder(bert_tokenizer, max_length=64)
    (sequence,) = encoder.encode([prompt], ["an answer [SEP] [PAD]"])
    ids = sequence.input_ids
    assert ids.count(bert_tokenizer.sep_token_id) == 2  # the pair template's own two
    assert ids.count(bert_tokenizer.cls_token_id) == 1
    assert bert_tokenizer.pad_token_id not in ids
    assert sequence.score_index == len(ids) - 1
