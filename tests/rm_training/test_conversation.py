"""The conversation format (rm_training.conversation): its checks, its one rendering, and the TRL and
HH-RLHF rows read into pairs, messy rows included."""

from __future__ import annotations

from typing import Any

import pytest

from rm_training import conversation
from rm_training.conversation import RowError, message_problems, normalize, pair_from_row, render

ALTERNATE = "after the system message, turns alternate user and assistant, starting with the user"


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_a_valid_conversation_has_no_problems() -> None:
    messages = [{"role": "system", "content": "Be brief."}, user("Hi"), assistant("Hello"), user("Why?")]
    assert message_problems(messages) == []


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], [("", "must have at least one message")]),
        ("text", [("", "must be a string or a list of messages")]),
        (["hi"], [("0", 'must be an object {"role", "content"}')]),
        ([{"role": "human", "content": "x"}], [("0.role", 'must be "system", "user" or "assistant"')]),
        (
            [{"role": "user", "content": "x", "name": "bob"}],
            [("0.name", "unknown key: a message has only role and content")],
        ),
        ([user("   ")], [("0.content", "must not be empty or blank")]),
        ([{"role": "user", "content": 5}], [("0.content", "required: a string")]),
        (
            [user("a"), {"role": "system", "content": "late"}, user("b")],
            [("1.role", "a system message may only be the first message")],
        ),
        (
            [user("a"), user("b")],
            [
                (
                    "1.role",
                    "must be 'assistant': " + ALTERNATE,
                )
            ],
        ),
        ([user("a"), assistant("b")], [("1.role", "the last message must be the user's")]),
        (
            [{"role": "system", "content": "s"}, assistant("b"), user("c")],
            [
                (
                    "1.role",
                    "must be 'user': " + ALTERNATE,
                ),
                (
                    "2.role",
                    "must be 'assistant': " + ALTERNATE,
                ),
            ],
        ),
    ],
)
def test_each_problem_names_its_message_and_field(messages: Any, expected: list[tuple[str, str]]) -> None:
    assert message_problems(messages) == expected


def test_the_limits_on_messages_and_content_are_refused() -> None:
    many = [user("q"), assistant("a")] * (conversation.MAX_MESSAGES // 2) + [user("q")]
    assert message_problems(many) == [
        ("", f"has {len(many)} messages; at most {conversation.MAX_MESSAGES} are allowed")
    ]
    long = [user("x" * (conversation.MAX_CONTENT_CHARS + 1))]
    assert message_problems(long) == [
        (
            "0.content",
            f"has {conversation.MAX_CONTENT_CHARS + 1} characters; at most {conversation.MAX_CONTENT_CHARS}",
        )
    ]


def test_the_rendering_is_role_labelled_blocks_and_a_lone_user_message_is_its_text() -> None:
    messages = [{"role": "system", "content": "Be brief."}, user("Hi"), assistant("Hello"), user("Why?")]
    assert render(messages) == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Why?"
    assert render([user("Just this")]) == "Just this" == render("Just this")
    assert normalize([user("Just this")]) == ("Just this", None)
    text, kept = normalize([{"role": "user", "content": "a"}, assistant("b"), user("c")])
    assert (text, kept) == ("User: a\n\nAssistant: b\n\nUser: c", [user("a"), assistant("b"), user("c")])


HH_CHOSEN = (
    "\n\nHuman: What is a river?\n\nAssistant: Flowing water.\n\nHuman: And a stone?\n\nAssistant: A rock."
)
HH_REJECTED = (
    "\n\nHuman: What is a river?\n\nAssistant: Flowing water.\n\nHuman: And a stone?\n\nAssistant: No idea."
)


def test_an_hh_transcript_splits_into_its_shared_history_and_the_two_last_turns() -> None:
    prompt, chosen, rejected = pair_from_row({"chosen": HH_CHOSEN, "rejected": HH_REJECTED}, "hh-rlhf")
    assert prompt == [user("What is a river?"), assistant("Flowing water."), user("And a stone?")]
    assert (chosen, rejected) == ("A rock.", "No idea.")


def test_a_transcript_without_its_leading_blank_line_reads_the_same() -> None:
    stripped = {"chosen": HH_CHOSEN.lstrip(), "rejected": HH_REJECTED.lstrip()}
    assert pair_from_row(stripped, "hh-rlhf") == pair_from_row(
        {"chosen": HH_CHOSEN, "rejected": HH_REJECTED}, "hh-rlhf"
    )


def test_an_empty_final_turn_is_an_empty_response() -> None:
    _, chosen, rejected = pair_from_row(
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": "\n\nHuman: Hi\n\nAssistant:"}, "hh-rlhf"
    )
    assert (chosen, rejected) == ("Hello", "")


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        (
            {"chosen": HH_CHOSEN, "rejected": HH_REJECTED.replace("Flowing", "Running")},
            "rejected",
            "differs from chosen at message 1",
        ),
        (
            {
                "chosen": "\n\nHuman: Hi\n\nAssistant: Hello\nHuman: sneaky",
                "rejected": "\n\nHuman: Hi\n\nAssistant: x",
            },
            "chosen",
            'turn 2 holds "Human:"',
        ),
        (
            {"chosen": "preamble\n\nHuman: Hi\n\nAssistant: a", "rejected": "\n\nHuman: Hi\n\nAssistant: b"},
            "chosen",
            "text before the first",
        ),
        (
            {"chosen": "no turns at all", "rejected": "\n\nHuman: Hi\n\nAssistant: b"},
            "chosen",
            "not an HH-RLHF transcript",
        ),
        (
            {
                "chosen": "\n\nHuman: Hi\n\nAssistant: a\n\nHuman: more",
                "rejected": "\n\nHuman: Hi\n\nAssistant: b",
            },
            "chosen",
            "the last turn must be the assistant's",
        ),
        ({"chosen": ["x"], "rejected": "\n\nHuman: Hi\n\nAssistant: b"}, "chosen", "must be a string"),
        ({"rejected": "\n\nHuman: Hi\n\nAssistant: b"}, "chosen", "required"),
    ],
)
def test_a_messy_hh_row_is_an_error_naming_its_field(row: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(RowError) as raised:
        pair_from_row(row, "hh-rlhf")
    assert any(f == field and words in message for f, message in raised.value.problems), raised.value.problems


def test_two_human_turns_in_a_row_parse_and_are_then_refused_by_the_alternation_rule() -> None:
    prompt, _, _ = pair_from_row(
        {
            "chosen": "\n\nHuman: a\n\nHuman: b\n\nAssistant: c",
            "rejected": "\n\nHuman: a\n\nHuman: b\n\nAssistant: d",
        },
        "hh-rlhf",
    )
    assert [p for p, _ in conversation.prompt_problems(prompt)] == ["1.role"]


def test_trl_explicit_rows_take_text_or_one_assistant_message() -> None:
    messages = [user("Hi"), assistant("Hello"), user("Bye?")]
    row = {"prompt": messages, "chosen": [assistant("Bye!")], "rejected": [assistant("No.")]}
    assert pair_from_row(row, "trl") == (messages, "Bye!", "No.")
    assert pair_from_row({"prompt": "p", "chosen": "x", "rejected": "y"}, "trl") == ("p", "x", "y")
    with pytest.raises(RowError) as raised:
        pair_from_row(
            {"prompt": messages, "chosen": [assistant("a"), assistant("b")], "rejected": "y"}, "trl"
        )
    assert raised.value.problems[0][0] == "chosen"


def test_trl_implicit_rows_split_off_the_shared_history() -> None:
    history = [{"role": "system", "content": "s"}, user("Hi")]
    row = {"chosen": [*history, assistant("Hello")], "rejected": [*history, assistant("Go away")]}
    assert pair_from_row(row, "trl") == (history, "Hello", "Go away")
    with pytest.raises(RowError) as raised:
        pair_from_row({"chosen": [user("a"), assistant("b")], "rejected": [user("z"), assistant("c")]}, "trl")
    assert raised.value.problems == [
        (
            "rejected",
            "differs from chosen at message 0, before the last turn: the two sides must be the same "
            "conversation up to their last (assistant) message",
        )
    ]
    with pytest.raises(RowError) as raised:
        pair_from_row({"chosen": "x", "rejected": "y"}, "trl")
    assert raised.value.problems[0][0] == "prompt"


@pytest.mark.parametrize("invisible", ["\u200b\u200b", "\ufeff\u00a0", "\u200d \u2060\u00ad", "\u202e\u202c"])
def test_a_content_of_invisible_characters_is_blank(invisible: str) -> None:
    # Zero-width spaces and joiners, the byte-order mark, a soft hyphen and bidi controls are not
    # whitespace to str.strip(), yet the rater reads an empty turn: such a message is blank, as "   " is.
    assert message_problems([user(invisible)]) == [("0.content", "must not be empty or blank")]
    assert conversation.prompt_problems(invisible) != []
    assert message_problems([user(invisible + "x")]) == []
