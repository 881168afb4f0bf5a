"""Reading JSON and JSON Lines as Pairwise stores them: one reader, one wording of its errors, for the REST
API, the management commands and the trainer. Plain Python (no Django, no torch).

What it refuses, and why: text that is not UTF-8; NaN, Infinity and numbers too large for a float (not
JSON, and no database column holds them); nesting deeper than :data:`MAX_DEPTH`; and, anywhere in a
value, keys included, strings that no database stores the same way: the NUL character (PostgreSQL refuses
it, SQLite keeps it) and lone UTF-16 surrogates (not Unicode text). A UTF-8 byte-order mark at the start
is skipped.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 64

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_BOM = b"\xef\xbb\xbf"


class JSONError(ValueError):
    """A value that is not JSON Pairwise can store; the message says what and where, without a prefix."""


@dataclass(frozen=True)
class Line:
    """One non-blank line of a JSON Lines text: its 1-based number, and its value or what is wrong."""

    number: int
    value: Any = None
    error: str | None = None
    field: str | None = None  # where in the value the error is, as "metadata.note" or "tags.2"


def _refuse_constant(name: str) -> Any:
    raise JSONError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JSONError(f"the number {text[:30]} is too large")
    return value


def loads(text: str) -> Any:
    """Parse one JSON text strictly; every failure is a JSONError with a short message. The strings are
    not checked here: see :func:`text_problems`."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except JSONError:
        raise
    except json.JSONDecodeError as exc:
        raise JSONError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError:
        # int() refuses integers longer than sys.get_int_max_str_digits() (a guard against slow parsing)
        # with a plain ValueError, which would otherwise escape every caller as a crash.
        raise JSONError(f"a number has more than {sys.get_int_max_str_digits()} digits") from None
    except RecursionError:
        raise JSONError(f"nested more than {MAX_DEPTH} levels deep") from None
    return value


def decode(data: bytes) -> str:
    """UTF-8 text, without a leading byte-order mark; JSONError when it is not UTF-8."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start}); save it as UTF-8"
        ) from None


def read_lines(chunks: Iterable[bytes]) -> Iterator[Line]:
    """The non-blank lines of JSON Lines bytes, each parsed, or with the reason it could not be."""
    number = 0
    for number, raw in enumerate(_split_lines(chunks), start=1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw.strip():
            continue
        try:
            value = loads(decode(raw))
        except JSONError as exc:
            yield Line(number, error=str(exc))
            continue
        for path, message in text_problems(value):
            yield Line(number, value, error=message, field=dotted(path))
            break
        else:
            yield Line(number, value)


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def text_problems(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, message) for every string or key in a parsed JSON value that cannot be stored."""
    if len(path) > MAX_DEPTH:
        yield path, f"nested more than {MAX_DEPTH} levels deep"
    elif isinstance(value, str):
        problem = _string_problem(value)
        if problem:
            yield path, problem
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = _string_problem(key)
            if problem:
                # The path names the key escaped: the bad character must not reach an error message.
                yield (*path, ascii(key)[1:-1]), f"the key {problem.removeprefix('the text ')}"
                continue
            yield from text_problems(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from text_problems(item, (*path, index))


def dotted(path: tuple[str | int, ...]) -> str | None:
    return ".".join(str(part) for part in path) or None


def _string_problem(text: str) -> str | None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    position = found.start()
    if char == "\x00":
        return f"the text holds a NUL character (\\u0000) at position {position}, which cannot be stored"
    return (
        f"the text holds a lone UTF-16 surrogate (\\u{ord(char):04x}) at position {position}; "
        "it is not valid Unicode"
    )


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: such a float becomes null, in dicts, lists and tuples too. The one walker
    for what Pairwise writes as JSON (the trainer's events, a run's metrics, the agreement report)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple | list):
        return [finite_or_none(v) for v in value]
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    return value
