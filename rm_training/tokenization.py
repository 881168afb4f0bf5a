"""(prompt, response) to token ids, padding into batches, and batches grouped by length: the one place where a
prompt (a text or a conversation, rm_training.conversation) becomes tokens, for training, evaluation, the CLI
and /score.

A tokenizer with a chat template (a chat model's) encodes every prompt through it: the scored sequence is
exactly ``tokenizer.apply_chat_template(history + [{"role": "assistant", "content": response}],
sanitize_control_tokens=True)`` (a plain prompt is one user message). ``sanitize_control_tokens``: a
message that holds the template's own control tokens ("<|im_end|>", "<|eot_id|>") gets them as plain text,
so no content can open a turn of its own. The reward is read where the sequence-classification head reads
it, the last token that is not the pad token: the end of the assistant's turn as the template writes it
(:attr:`EncodedSequence.score_index`). A long conversation first loses whole turns, a user turn with the
assistant's answer at a time from the oldest (so that the rest still alternates), keeping the system message
and the last user turn; when that is not enough, the last user turn is cut from its start (down to a quarter
of the room), then the response from its end, then the system message from its end. The response is never
dropped; :attr:`EncodedSequence.messages_dropped` counts the messages left out.

A tokenizer without a chat template (the default MiniLM, BERT-shaped) encodes a conversation as its one
text rendering (rm_training.conversation.render, role names and blank lines), truncated by turns the same
way; a plain prompt as below.

One format for plain prompts without a chat template: the tokenizer's own pair template
(``[CLS] prompt [SEP] response [SEP]`` for BERT, with segment ids). A tokenizer whose pair template puts
nothing between the two texts (GPT-2, most decoders) gets a blank line after the prompt, so the two never
run together. No EOS is appended: the
reward is read where the model's own sequence-classification head reads it, the rightmost token that is
not the pad token, which is then the last real token of the response even when pad == EOS (the trap of
TRL issues #937 and #2758, where a pad that is also the EOS made the head read a padding position).

Truncation never drops a pair and never cuts the response away for a long prompt: the prompt is cut from
the left first (its end, next to the response, stays), keeping at least a quarter of the budget when it has
that much; only a response longer than the rest is cut, from its end.
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from jinja2 import TemplateError
from tokenizers import Encoding, Tokenizer
from transformers import PreTrainedTokenizerBase

from .conversation import Message, as_messages, render
from .data import Comparison
from .errors import InputError

Prompt = str | Sequence[Message]

DECODER_SEPARATOR = "\n\n"

# Cutting a text by characters before tokenizing it, so that the cost of a huge text is that of a few
# thousand characters. A text keeps at most ``budget`` tokens (the prompt its last ones, the response its
# first ones), so only the characters that make those tokens matter; the rest is cut first, at
# CHARS_PER_TOKEN characters per token of the budget plus CUT_MARGIN. That cut cannot change the kept tokens
# of ordinary text: tokenizers split text into words (pre-tokens) and tokenize each on its own, so a cut
# changes only the word it falls in. The cut is therefore checked, not assumed: it is kept only when the
# text it leaves still has more than ``budget`` tokens (so the truncation decisions and flags are those of
# the whole text) and every one of those tokens lies more than CUT_MARGIN characters away from the cut
# (farther than the cut word reaches, for any word under CUT_MARGIN characters). Otherwise (long runs of
# whitespace that make no tokens, a giant single word) the cut is widened fourfold until it passes or the
# whole text is used, so the result is always the one of the uncut text for such texts too.
CHARS_PER_TOKEN = 8
CUT_MARGIN = 1024


@dataclass(frozen=True)
class EncodedSequence:
    input_ids: list[int]
    token_type_ids: list[int]
    prompt_truncated: bool
    response_truncated: bool
    # Messages of a conversation's history left out whole to fit max_length.
    messages_dropped: int = 0
    # Where the reward is read: the last token that is not the pad token (as the model's head reads it
    # in a right-padded batch); -1 means the last token.
    score_index: int = -1


@dataclass(frozen=True)
class EncodedPair:
    comparison: Comparison
    chosen: EncodedSequence
    rejected: EncodedSequence

    @property
    def length(self) -> int:
        return max(len(self.chosen.input_ids), len(self.rejected.input_ids))

    @property
    def truncated(self) -> bool:
        return any(s.prompt_truncated or s.response_truncated for s in (self.chosen, self.rejected))

    @property
    def response_truncated(self) -> bool:
        return self.chosen.response_truncated or self.rejected.response_truncated

    @property
    def messages_dropped(self) -> int:
        """Messages of the conversation left out to fit max_length (the two sides share the history; the
        longer response may drop more)."""
        return max(self.chosen.messages_dropped, self.rejected.messages_dropped)

    @property
    def identical(self) -> bool:
        """Whether both sides encode to the same model input (an uncased tokenizer folds their only
        difference away, or truncation cuts it off). Their rewards are then equal by construction, so
        such a pair is a tie in score, and its Bradley-Terry gradient is exactly zero."""
        return (self.chosen.input_ids, self.chosen.token_type_ids) == (
            self.rejected.input_ids,
            self.rejected.token_type_ids,
        )


Spans = list[tuple[int, int]]  # the character span of each token of a text


@dataclass(frozen=True)
class _History:
    """A conversation's history as its cut needs it: the system message (or none), the turns after it, the
    tokens of the whole history with an empty response, and ``saved[k]``: about how many tokens leaving
    out the k oldest (user, assistant) turn pairs saves."""

    system: list[Message]
    turns: list[Message]
    length: int
    saved: list[float]

    def kept(self, drop: int) -> list[Message]:
        """The history without its ``drop`` oldest turn pairs."""
        return [*self.system, *self.turns[2 * drop :]]


class PairTargets(NamedTuple):
    """What the loss needs of B pairs besides their rewards, one value per pair."""

    # As on Comparison, one entry per pair; a pair without a margin gets 0.
    target: torch.Tensor  # float32
    weight: torch.Tensor  # float32
    margin: torch.Tensor  # float32
    tie: torch.Tensor  # bool

    def to(self, device: torch.device) -> PairTargets:
        return PairTargets(*(t.to(device) for t in self))


class Batch(NamedTuple):
    """A collated batch of B pairs: the model's inputs (2B rows, chosen then rejected) and the loss's
    inputs, apart, so that ``model(**batch.inputs)`` is the whole forward pass and no caller lists keys."""

    inputs: dict[str, torch.Tensor]
    targets: PairTargets

    def to(self, device: torch.device) -> Batch:
        return Batch({k: v.to(device) for k, v in self.inputs.items()}, self.targets.to(device))


class PairEncoder:
    """Encodes (prompt, response) the same way for training, evaluation and scoring."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise InputError(
                f"{tokenizer.name_or_path}: rm_training needs a fast tokenizer (a tokenizer.json), and this "
                "one is not"
            )
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; load it through rm_training.model")
        # A private copy without the padding/truncation that some tokenizer.json files switch on
        # (the MiniLM one pads everything to 128), so that lengths here are the real ones.
        self._backend = Tokenizer.from_str(backend.to_str())
        self._backend.no_padding()
        self._backend.no_truncation()
        # A text that says "[SEP]" or "<|endoftext|>" is text: only the templates add special tokens, so no
        # prompt, message or response can end a segment or pass for padding (the chat path's
        # sanitize_control_tokens does the same for a template's control tokens).
        self._backend.encode_special_tokens = True
        self.max_length = max_length
        self.tokenizer = tokenizer
        # A chat model's template: every prompt goes through it (see the module's docstring).
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.pad_token_id: int = tokenizer.pad_token_id
        self.uses_token_type_ids = "token_type_ids" in tokenizer.model_input_names
        special_pair = self._backend.num_special_tokens_to_add(True)
        self.separator = (
            "" if special_pair > self._backend.num_special_tokens_to_add(False) else DECODER_SEPARATOR
        )
        self.budget = max_length - special_pair
        if self.budget < 2:
            raise InputError(
                f"max_length {max_length} leaves no room for text: the template takes {special_pair}"
            )

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[EncodedSequence]:
        """Each (prompt, response) as one sequence; a prompt is a text or a list of messages."""
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses must have the same length")
        plain = [
            i
            for i, p in enumerate(prompts)
            if not self.chat and (isinstance(p, str) or (len(p) == 1 and p[0]["role"] == "user"))
        ]
        result: list[EncodedSequence | None] = [None] * len(prompts)
        if plain:
            texts = [render(prompts[i]) for i in plain]
            for index, sequence in zip(
                plain, self._encode_plain(texts, [responses[i] for i in plain]), strict=True
            ):
                result[index] = sequence
        # Shared by the sequences of this call (scoring gives one history with up to 64 responses).
        tokens = functools.cache(self._tokens)
        histories: dict[tuple[tuple[str, str], ...], _History] = {}
        for index, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
            if result[index] is None:
                result[index] = self._encode_conversation(as_messages(prompt), response, tokens, histories)
        return [s for s in result if s is not None]

    def _encode_plain(self, prompts: Sequence[str], responses: Sequence[str]) -> list[EncodedSequence]:
        # Each distinct prompt is tokenized once (scoring gives one prompt with up to 64 responses), and
        # each use gets its own copy: truncation cuts encodings in place.
        distinct = list(dict.fromkeys(prompts))
        encoded = dict(
            zip(
                distinct,
                self._encode_texts([p + self.separator for p in distinct], keep_end=True),
                strict=True,
            )
        )
        prompt_encodings = [copy.deepcopy(encoded[p]) for p in prompts]
        response_encodings = self._encode_texts(list(responses), keep_end=False)
        return [self._join(p, r) for p, r in zip(prompt_encodings, response_encodings, strict=True)]

    @property
    def char_cut(self) -> int:
        """Characters of a text kept before tokenizing it at first (see CHARS_PER_TOKEN)."""
        return self.budget * CHARS_PER_TOKEN + CUT_MARGIN

    def _encode_texts(self, texts: Sequence[str], *, keep_end: bool) -> list[Encoding]:
        """Tokenize texts cut by characters (their end kept when ``keep_end``, else their start), with
        the same tokens as the whole texts would give where truncation keeps them."""
        result: list[Encoding | None] = [None] * len(texts)
        pending = list(range(len(texts)))
        cut = self.char_cut
        while pending:
            pieces = [texts[i][-cut:] if keep_end else texts[i][:cut] for i in pending]
            encodings = self._backend.encode_batch(pieces, add_special_tokens=False)
            retry = []
            for index, piece, encoding in zip(pending, pieces, encodings, strict=True):
                if len(piece) == len(texts[index]) or self._cut_is_safe(encoding, len(piece), keep_end):
                    result[index] = encoding
                else:
                    retry.append(index)
            pending, cut = retry, cut * 4
        return [e for e in result if e is not None]

    def _cut_is_safe(self, encoding: Encoding, length: int, keep_end: bool) -> bool:
        n = len(encoding.ids)
        if n <= self.budget:
            return False
        if keep_end:  # the kept tokens and the one before them start far from the cut (at 0)
            return bool(encoding.offsets[n - self.budget - 1][0] >= CUT_MARGIN)
        return bool(encoding.offsets[self.budget][1] <= length - CUT_MARGIN)

    def _join(self, prompt: Encoding, response: Encoding) -> EncodedSequence:
        n_prompt, n_response = len(prompt.ids), len(response.ids)
        keep_prompt, keep_response = n_prompt, n_response
        if n_prompt + n_response > self.budget:
            keep_prompt = min(n_prompt, max(self.budget - n_response, self.budget // 4))
            keep_response = self.budget - keep_prompt
            prompt.truncate(keep_prompt, direction="left")
            response.truncate(keep_response, direction="right")
        joined = self._backend.post_process(prompt, response, add_special_tokens=True)
        return EncodedSequence(
            input_ids=list(joined.ids),
            token_type_ids=list(joined.type_ids),
            prompt_truncated=keep_prompt < n_prompt,
            response_truncated=keep_response < n_response,
            score_index=self._score_index(joined.ids),
        )

    def _score_index(self, ids: Sequence[int]) -> int:
        return next((i for i in range(len(ids) - 1, -1, -1) if ids[i] != self.pad_token_id), len(ids) - 1)

    def _build(self, history: list[Message], response: str) -> tuple[list[int], list[int]]:
        """(input_ids, token_type_ids) of a history and a response, uncut: through the chat template, or
        the text rendering joined to the response by the pair template."""
        if self.chat:
            try:
                ids = self.tokenizer.apply_chat_template(
                    [*history, {"role": "assistant", "content": response}],
                    tokenize=True,
                    return_dict=False,
                    sanitize_control_tokens=True,
                )
            except (ValueError, TemplateError) as error:
                # The template's own refusals (Llama 2's "roles must alternate", a system message it does
                # not take) and a control token that its tokenizer also makes from plain text.
                first = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise InputError(f"the base model's chat template refuses a conversation: {first}") from error
            return list(ids), [0] * len(ids)
        prompt = self._backend.encode(render(history) + self.separator, add_special_tokens=False)
        answer = self._backend.encode(response, add_special_tokens=False)
        joined = self._backend.post_process(prompt, answer, add_special_tokens=True)
        return list(joined.ids), list(joined.type_ids)

    def _tokens(self, text: str) -> Spans:
        """The character span of each token of a text on its own."""
        return list(self._backend.encode(text, add_special_tokens=False).offsets)

    def _history(self, history: list[Message], tokens: Callable[[str], Spans]) -> _History:
        """What cutting a history needs, computed once for every response to it."""
        system = history[:1] if history[0]["role"] == "system" else []
        counts = [len(tokens(m["content"])) for m in history]
        length = len(self._build(history, "")[0])
        # The template's own tokens per message (role headers, separators), on average.
        per_message = max(0.0, (length - sum(counts)) / (len(history) + 1))
        saved = [0.0]
        for first in range(len(system), len(history) - 1, 2):
            saved.append(saved[-1] + counts[first] + counts[first + 1] + 2 * per_message)
        return _History(system, history[len(system) :], length, saved)

    def _encode_conversation(
        self,
        history: list[Message],
        response: str,
        tokens: Callable[[str], Spans],
        histories: dict[tuple[tuple[str, str], ...], _History],
    ) -> EncodedSequence:
        """A conversation cut to max_length by the rule of the module's docstring: the fewest (user,
        assistant) turn pairs left out, oldest first, that make it fit.

        Which number that is comes from an estimate (the tokens of the history, less those of each turn
        pair and its share of the template's own), and is then checked on the exact encoding, one pair at a
        time, so that only sequences about max_length long are encoded per response, however long the
        history: a 121-message history encoded whole for each of 64 responses took seconds."""
        key = tuple((m["role"], m["content"]) for m in history)
        info = histories.get(key)
        if info is None:
            info = histories[key] = self._history(history, tokens)
        most = len(info.saved) - 1
        whole = info.length + len(tokens(response))
        drop = next((k for k in range(most + 1) if whole - info.saved[k] <= self.max_length), most)
        built = self._build(info.kept(drop), response)
        if len(built[0]) <= self.max_length:
            while (
                drop > 0 and len((longer := self._build(info.kept(drop - 1), response))[0]) <= self.max_length
            ):
                drop, built = drop - 1, longer
        else:
            while len(built[0]) > self.max_length and drop < most:
                drop += 1
                built = self._build(info.kept(drop), response)
        if len(built[0]) <= self.max_length:
            return EncodedSequence(
                built[0],
                built[1],
                prompt_truncated=drop > 0,
                response_truncated=False,
                messages_dropped=2 * drop,
                score_index=self._score_index(built[0]),
            )
        return self._cut_inside(info.system, info.turns[-1], response, tokens, dropped=len(info.turns) - 1)

    def _cut_inside(
        self,
        system: list[Message],
        last: Message,
        response: str,
        tokens: Callable[[str], Spans],
        *,
        dropped: int,
    ) -> EncodedSequence:
        """Only the system message (if any) and the last user turn are left, still too long: cut inside
        them and the response, by tokens."""
        spans = {
            "system": tokens(system[0]["content"]) if system else [],
            "user": tokens(last["content"]),
            "response": tokens(response),
        }
        counts = {key: len(value) for key, value in spans.items()}
        ids, _ = self._build([*system, last], response)
        budget = self.max_length - (len(ids) - sum(counts.values()))
        for _ in range(16):
            if budget < 3:
                break
            user = min(counts["user"], max(budget - counts["system"] - counts["response"], budget // 4))
            answer = min(counts["response"], max(budget - counts["system"] - user, budget // 4))
            kept_system = min(counts["system"], budget - user - answer)
            history = [
                *(
                    [{"role": "system", "content": _head(system[0]["content"], spans["system"], kept_system)}]
                    if system
                    else []
                ),
                {"role": "user", "content": _tail(last["content"], spans["user"], user)},
            ]
            cut_response = _head(response, spans["response"], answer)
            ids, types = self._build(history, cut_response)
            if len(ids) <= self.max_length:
                return EncodedSequence(
                    ids,
                    types,
                    prompt_truncated=True,
                    response_truncated=answer < counts["response"],
                    messages_dropped=dropped,
                    score_index=self._score_index(ids),
                )
            # Tokens at the cuts merge differently inside the template: take the excess off and try again.
            budget -= len(ids) - self.max_length
        raise InputError(
            f"max_length {self.max_length} leaves no room for text once the chat template's own tokens are in"
        )

    def encode_pairs(self, comparisons: Sequence[Comparison]) -> list[EncodedPair]:
        # One call for both sides: each prompt (or conversation history) is tokenized once, not twice.
        prompts = [c.conversation for c in comparisons]
        sides = self.encode(prompts * 2, [c.chosen for c in comparisons] + [c.rejected for c in comparisons])
        n = len(comparisons)
        return [EncodedPair(c, ch, rj) for c, ch, rj in zip(comparisons, sides[:n], sides[n:], strict=True)]

    def pad(self, sequences: Sequence[EncodedSequence]) -> dict[str, torch.Tensor]:
        """Right-pad to the longest sequence given (dynamic padding), as model inputs."""
        length = max(len(s.input_ids) for s in sequences)
        input_ids = torch.full((len(sequences), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        token_type_ids = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            n = len(sequence.input_ids)
            input_ids[row, :n] = torch.tensor(sequence.input_ids)
            attention_mask[row, :n] = 1
            token_type_ids[row, :n] = torch.tensor(sequence.token_type_ids)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_type_ids:
            batch["token_type_ids"] = token_type_ids
        return batch

    def collate(self, pairs: Sequence[EncodedPair]) -> Batch:
        """One batch of 2B sequences, chosen first then rejected, for a single forward pass; and apart from
        them the per-pair loss inputs."""
        return Batch(
            inputs=self.pad([p.chosen for p in pairs] + [p.rejected for p in pairs]),
            targets=pair_targets(pairs),
        )


def pair_targets(pairs: Sequence[EncodedPair]) -> PairTargets:
    """The per-pair loss inputs of ``pairs``, whatever way their sequences are batched (padded or packed)."""
    comparisons = [p.comparison for p in pairs]
    return PairTargets(
        target=torch.tensor([c.target for c in comparisons], dtype=torch.float32),
        weight=torch.tensor([c.weight for c in comparisons], dtype=torch.float32),
        margin=torch.tensor(
            [0.0 if c.margin is None else c.margin for c in comparisons], dtype=torch.float32
        ),
        tie=torch.tensor([c.tie for c in comparisons], dtype=torch.bool),
    )


def _head(text: str, spans: Sequence[tuple[int, int]], keep: int) -> str:
    """The text of its first ``keep`` tokens."""
    if keep >= len(spans):
        return text
    return text[: spans[keep - 1][1]] if keep > 0 else ""


def _tail(text: str, spans: Sequence[tuple[int, int]], keep: int) -> str:
    """The text of its last ``keep`` tokens."""
    if keep >= len(spans):
        return text
    return text[spans[len(spans) - keep][0] :] if keep > 0 else ""


def length_grouped_batches(
    lengths: Sequence[int], *, batch_size: int, seed: int, epoch: int, group_factor: int = 50
) -> list[list[int]]:
    """Indices in batches of similar length, so dynamic padding pads little; the order is random.

    Shuffle, sort by length within windows of group_factor batches, cut into batches, shuffle the
    batches: close to sorted for padding, still random for the optimizer. Same seed and epoch, same
    batches, in every process.
    """
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * group_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches
