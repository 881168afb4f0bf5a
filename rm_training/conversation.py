"""Conversations: the message format of a pair's prompt, its checks, its one text rendering, and the
preference-row formats teams have (TRL's, HH-RLHF's) read into it. Plain Python: no Django, no torch (the
web process, the import command, the exports and the trainer all import it, so they refuse and render the
same things in the same words).

The format, stated once:

- A prompt is a string or a list of messages ``{"role": "system" | "user" | "assistant", "content": str}``.
  A string means one user message holding it, and a list of one user message is that same prompt.
- At most one system message, and only first. After it the turns alternate user, assistant, user, ...,
  starting and ending with the user (the response being judged is the next assistant turn). Chat templates
  (Llama 2's, Gemma's) refuse anything else, and a history that does not alternate is most often a
  mis-split transcript, so it is refused here rather than trained on.
- Each message has exactly the keys role and content; content is a non-blank string of at most
  :data:`MAX_CONTENT_CHARS` characters; a prompt has at most :data:`MAX_MESSAGES` messages.

The text rendering (:func:`render`): a lone user message is its content, unchanged, so that a plain prompt
reads and trains as it always did; any other conversation is its messages in order, each as
``"<Role>: <content>"`` (System, User, Assistant), separated by one blank line. It is for reading and for
tokenizers without a chat template, not for parsing back: a content may itself hold such lines.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal

ROLES = ("system", "user", "assistant")
LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}
MAX_MESSAGES = 500
MAX_CONTENT_CHARS = 200_000

Message = dict[str, str]
# Where in the value a problem is (a dotted path relative to it, "" for the value itself) and what it is:
# lower case, no final stop; callers add their field's name in front and their own punctuation.
Problem = tuple[str, str]

# Import formats (the import endpoint's ``format`` parameter, ``import_pairs --format``).
FORMATS = ("pairs", "trl", "hh-rlhf")
Format = Literal["pairs", "trl", "hh-rlhf"]


def is_blank(text: str) -> bool:
    """Nothing a reader would see: whitespace and Unicode format characters (category Cf: zero-width
    spaces and joiners, the byte-order mark, soft hyphens, bidi controls), which str.strip() keeps."""
    return all(c.isspace() or unicodedata.category(c) == "Cf" for c in text)


def _at(*parts: str | int) -> str:
    return ".".join(str(p) for p in parts if p != "")


def message_problems(value: Any) -> list[Problem]:
    """Every problem of a list of messages as a prompt (empty when it is one)."""
    if not isinstance(value, list):
        return [("", "must be a string or a list of messages")]
    if not value:
        return [("", "must have at least one message")]
    if len(value) > MAX_MESSAGES:
        return [("", f"has {len(value)} messages; at most {MAX_MESSAGES} are allowed")]
    problems: list[Problem] = []
    offset = 0
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            problems.append((_at(index), 'must be an object {"role", "content"}'))
            continue
        for key in sorted(set(message) - {"role", "content"}, key=str):
            problems.append((_at(index, key), "unknown key: a message has only role and content"))
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            problems.append((_at(index, "role"), 'must be "system", "user" or "assistant"'))
        elif role == "system":
            if index != 0:
                problems.append((_at(index, "role"), "a system message may only be the first message"))
            else:
                offset = 1
        else:
            expected = "user" if (index - offset) % 2 == 0 else "assistant"
            if role != expected:
                problems.append(
                    (
                        _at(index, "role"),
                        f"must be {expected!r}: after the system message, turns alternate user and "
                        "assistant, starting with the user",
                    )
                )
        if not isinstance(content, str):
            problems.append((_at(index, "content"), "required: a string"))
        elif is_blank(content):
            problems.append((_at(index, "content"), "must not be empty or blank"))
        elif len(content) > MAX_CONTENT_CHARS:
            problems.append(
                (_at(index, "content"), f"has {len(content)} characters; at most {MAX_CONTENT_CHARS}")
            )
    last = value[-1]
    if isinstance(last, dict) and last.get("role") in ROLES and last.get("role") != "user":
        problems.append((_at(len(value) - 1, "role"), "the last message must be the user's"))
    return problems


def prompt_problems(value: Any) -> list[Problem]:
    """Every problem of a prompt: a non-blank string, or a list of messages."""
    if value is None or isinstance(value, str):
        if value and not is_blank(value):
            return []
        return [("", "required: a non-empty string or a list of messages")]
    return message_problems(value)


def normalize(value: str | Sequence[Message]) -> tuple[str, list[Message] | None]:
    """A checked prompt as (its text rendering, its messages or None for a plain prompt). A lone user
    message is a plain prompt; messages are copied with only their role and content."""
    if isinstance(value, str):
        return value, None
    messages = [{"role": m["role"], "content": m["content"]} for m in value]
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"], None
    return render(messages), messages


def as_messages(value: str | Sequence[Message]) -> list[Message]:
    """A prompt as a list of messages (a string is one user message)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return [{"role": m["role"], "content": m["content"]} for m in value]


def render(value: str | Sequence[Message]) -> str:
    """The one text rendering of a prompt (see the module's docstring)."""
    if isinstance(value, str):
        return value
    if len(value) == 1 and value[0]["role"] == "user":
        return value[0]["content"]
    return "\n\n".join(f"{LABELS[m['role']]}: {m['content']}" for m in value)


# Preference rows of other tools, read into pairs.

# HH-RLHF's turn markers: a blank line, then the speaker.
_HH_MARKER = re.compile(r"\n\nHuman:|\n\nAssistant:")
# A speaker's name at the start of a line inside a turn: in real files this is a turn whose blank line was
# lost (or a quoted dialogue), which cannot be told apart safely, so it is refused, never split or kept.
_HH_STRAY = re.compile(r"(?:^|\n)\s*(?:Human|Assistant):")
_HH_ROLES = {"\n\nHuman:": "user", "\n\nAssistant:": "assistant"}


class RowError(ValueError):
    """A row that cannot be read as a pair: ``problems`` name its fields."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(
            "; ".join(f"{field}: {message}" if field else message for field, message in problems)
        )
        self.problems = problems


def parse_transcript(text: str, field: str) -> list[Message]:
    """An HH-RLHF transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") as messages, contents stripped of
    the spaces around them; the blank line before the first turn may be missing. RowError (naming
    ``field``) for text before the first turn, a speaker's name at the start of a line inside a turn, or no
    turn at all."""
    if re.match(r"\s*(?:Human|Assistant):", text):
        # Copies of the data set stripped of their leading blank line: the first turn is still certain.
        text = "\n\n" + text.lstrip()
    markers = list(_HH_MARKER.finditer(text))
    if not markers:
        raise RowError([(field, 'no "\\n\\nHuman:" or "\\n\\nAssistant:" turn: not an HH-RLHF transcript')])
    if text[: markers[0].start()].strip():
        raise RowError([(field, 'text before the first "\\n\\nHuman:" turn')])
    messages = []
    for number, marker in enumerate(markers):
        end = markers[number + 1].start() if number + 1 < len(markers) else len(text)
        content = text[marker.end() : end]
        if _HH_STRAY.search(content):
            raise RowError(
                [
                    (
                        field,
                        f'turn {number + 1} holds "Human:" or "Assistant:" at the start of a line without '
                        "the blank line before it: where that turn ends cannot be told",
                    )
                ]
            )
        messages.append({"role": _HH_ROLES[marker.group()], "content": content.strip()})
    return messages


def _split_conversations(chosen: list[Message], rejected: list[Message]) -> tuple[list[Message], str, str]:
    """Two whole conversations that share everything but their last, assistant, message: (the shared
    prompt, chosen's last content, rejected's last content)."""
    problems: list[Problem] = []
    for field, side in (("chosen", chosen), ("rejected", rejected)):
        if not side or side[-1].get("role") != "assistant":
            problems.append((field, "the last turn must be the assistant's (the response)"))
    if problems:
        raise RowError(problems)
    if chosen[:-1] != rejected[:-1]:
        shared = next(
            (i for i, (c, r) in enumerate(zip(chosen[:-1], rejected[:-1], strict=False)) if c != r),
            min(len(chosen), len(rejected)) - 1,
        )
        raise RowError(
            [
                (
                    "rejected",
                    f"differs from chosen at message {shared}, before the last turn: the two sides must be "
                    "the same conversation up to their last (assistant) message",
                )
            ]
        )
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def _message_list(value: Any, field: str) -> list[Message]:
    """A list of {role, content} objects with string fields (the order rules are checked later, on the
    prompt)."""
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    ):
        raise RowError([(field, 'must be a list of messages {"role", "content"} with string values')])
    return value


def _completion(value: Any, field: str) -> str:
    """TRL's chosen or rejected of an explicit-prompt row: a string, or one assistant message."""
    if isinstance(value, str):
        return value
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and set(value[0]) == {"role", "content"}
        and value[0]["role"] == "assistant"
        and isinstance(value[0]["content"], str)
    ):
        return value[0]["content"]
    raise RowError([(field, 'must be a string or a list of one message {"role": "assistant", "content"}')])


ROW_FIELDS = ("prompt", "chosen", "rejected")


def pair_from_row(row: Any, fmt: Format) -> tuple[str | list[Message], str, str]:
    """A TRL or HH-RLHF preference row as (prompt, chosen response, rejected response), the prompt
    unchecked (the caller checks it with :func:`prompt_problems`). RowError names what is wrong.

    - ``trl``: with ``prompt`` (a string or messages), chosen and rejected are strings or one assistant
      message each (TRL's standard and conversational rows). Without it, chosen and rejected are whole
      conversations that must be the same up to their last, assistant, message: that shared part is the
      prompt (TRL's implicit prompt).
    - ``hh-rlhf``: chosen and rejected are transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ..."), the same up
      to their last turn, which must be the assistant's; a ``prompt`` field is ignored (some copies of the
      data set add one, a prefix of the transcripts).
    """
    if not isinstance(row, dict):
        raise RowError([("", "must be a JSON object")])
    missing = [(f, "required") for f in ("chosen", "rejected") if f not in row]
    if missing:
        raise RowError(missing)
    if fmt == "hh-rlhf":
        sides = []
        for field in ("chosen", "rejected"):
            if not isinstance(row[field], str):
                raise RowError([(field, "must be a string: an HH-RLHF transcript")])
            sides.append(parse_transcript(row[field], field))
        return _split_conversations(sides[0], sides[1])
    if row.get("prompt") is None:
        if isinstance(row["chosen"], str) or isinstance(row["rejected"], str):
            raise RowError(
                [
                    (
                        "prompt",
                        "required when chosen and rejected are text (only whole conversations share one)",
                    )
                ]
            )
        return _split_conversations(
            _message_list(row["chosen"], "chosen"), _message_list(row["rejected"], "rejected")
        )
    problems: list[Problem] = []
    responses = []
    for field in ("chosen", "rejected"):
        try:
            responses.append(_completion(row[field], field))
        except RowError as error:
            problems.extend(error.problems)
    if problems:
        raise RowError(problems)
    return row["prompt"], responses[0], responses[1]
