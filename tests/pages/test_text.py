"""Model text and conversations as the pages render them (annotation/pages/text.py): CommonMark with raw
HTML off, images as text, links only to the web and to mail, and hostile markup in every field of a
conversation rendered inert. Parsed back with a browser-like parser: what matters is the tags a browser
would build."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.template.loader import render_to_string

from annotation.pages.text import CACHE_FROM, FOLD_AFTER, markdown_html, model_html, pair_view

# Every tag markdown may produce for model text; none of them loads or runs anything.
SAFE_TAGS = {
    *[
        "p",
        "a",
        "em",
        "strong",
        "code",
        "pre",
        "ul",
        "ol",
        "li",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "blockquote",
        "hr",
        "br",
        "s",
        "span",
    ],
    *["h1", "h2", "h3", "h4", "h5", "h6"],
}
# What _pair.html adds around the texts.
PAGE_TAGS = {"div", "section", "h2", "details", "summary", "kbd"}


class Tags(HTMLParser):
    """The tags and attributes of some HTML, as a browser's parser would see them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def names(self) -> set[str]:
        return {tag for tag, _ in self.seen}

    def of(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.seen if name == tag]

    def all_text(self) -> str:
        return "".join(self.text)


def assert_inert(html: str, allowed: set[str] = SAFE_TAGS) -> Tags:
    tags = Tags(html)
    assert tags.names() <= allowed, (tags.names() - allowed, html)
    for tag, attrs in tags.seen:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, html)
            assert name not in {"src", "srcset", "srcdoc", "style", "formaction", "action", "data"}, (
                tag,
                name,
            )
            if name == "href":
                assert value.startswith(("https://", "http://", "mailto:")), (value, html)
    return tags


HOSTILE = [
    '<script>pwned("script")</script>',
    "<img src=x onerror=\"pwned('img')\">",
    "<svg onload=\"pwned('svg')\"><circle r=40 /></svg>",
    "<iframe srcdoc=\"<script>parent.pwned('srcdoc')</script>\"></iframe>",
    "<a href=\"javascript:pwned('a')\">click me</a>",
    "<div onmouseover=\"pwned('hover')\">hover</div>",
    "<math><mtext><table><mglyph><style><img src=x onerror=pwned('mxss')>",
    "</textarea></pre></div><script>pwned('close-tags')</script>",
    "[markdown link](javascript:pwned('md'))",
    "[entity](java&#115;cript:pwned('entity'))",
    "[mixed case](JaVaScRiPt:pwned('md-case'))",
    "<javascript:pwned('autolink')>",
    "![image](javascript:pwned('md-image'))",
    '![x" onerror="pwned(1)](https://example.org/x.png "t\\" onload=\\"pwned(2)")',
    "[data](data:text/html,<script>pwned('data')</script>)",
    "[vb](vbscript:msgbox(1))",
    "[file](file:///etc/passwd)",
    "[here](/logout/)",
    "{{ request.user }} {% csrf_token %}",
]
HOSTILE_TEXT = "\n\n".join(HOSTILE)


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_markdown_renders_inert(source):
    assert_inert(model_html(source))
    assert_inert(model_html(f"- item\n\n  {source}\n\n> {source}\n\n| h |\n|---|\n| {source} |"))


def test_raw_html_is_text_not_markup():
    tags = assert_inert(model_html('<div class="x" onclick="pwned()">hello</div>\n\n<b>bold?</b> <br>'))
    assert tags.names() == {"p"}
    assert '<div class="x" onclick="pwned()">hello</div>' in tags.all_text()
    assert "<b>bold?</b> <br>" in tags.all_text()


def test_html_inside_a_code_fence_is_code():
    html = model_html("```html\n<script>pwned()</script>\n<img src=x onerror=pwned()>\n```")
    tags = assert_inert(html)
    assert tags.names() == {"pre", "code"}
    assert tags.all_text().rstrip("\n") == "<script>pwned()</script>\n<img src=x onerror=pwned()>"
    # The info string is an attribute value: quoted, never a way out of it.
    tags = assert_inert(model_html('```"><script>pwned()</script>\nx\n```'))
    assert tags.names() == {"pre", "code"}


def test_links_go_to_the_web_or_mail_only_and_open_beside_the_page():
    tags = assert_inert(
        model_html("[web](https://example.org/a?b=1) [mail](mailto:x@example.org) <http://x.org>")
    )
    links = tags.of("a")
    assert [a["href"] for a in links] == ["https://example.org/a?b=1", "mailto:x@example.org", "http://x.org"]
    assert all(a["target"] == "_blank" and a["rel"] == "noopener noreferrer" for a in links)
    for refused in (
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "/logout/",
        "data:text/html,x",
        "file:///x",
    ):
        tags = assert_inert(model_html(f"[x]({refused})"))
        assert tags.of("a") == [] and f"[x]({refused})" in tags.all_text(), refused


def test_images_are_never_loaded_their_alt_and_address_shown_as_text():
    tags = assert_inert(model_html("See ![a *cat* <b>](https://tracker.example/p.png?u=1) here."))
    assert tags.of("img") == []
    assert tags.of("span") == [{"class": "image-ref"}]
    assert "[image: a cat <b>] <https://tracker.example/p.png?u=1>" in tags.all_text()


def test_nested_lists_tables_and_strikethrough():
    html = model_html("- a\n  - b\n    1. c\n    2. d\n- e\n\n| x | y |\n|---|:-:|\n| 1 | 2 |\n\n~~old~~")
    tags = assert_inert(html)
    assert [tag for tag, _ in tags.seen if tag in ("ul", "ol")] == ["ul", "ul", "ol"]
    assert {"table", "thead", "tbody", "th", "td", "s"} <= tags.names()
    # The centred column is a class, not a style attribute (which the CSP would refuse).
    assert [cell.get("class") for cell in tags.of("td")] == [None, "align-center"]


def test_a_five_thousand_character_line_is_kept_whole():
    line = "x" * 5000
    assert Tags(model_html(line)).all_text().strip() == line
    assert Tags(model_html(f"```\n{line}\n```")).all_text().strip() == line


def test_the_instructions_keep_their_images_and_refuse_script_links():
    # The instructions are the admin's, with images from this site; model text never loads one.
    assert "<img" in markdown_html("![logo](/static/logo.png)")
    assert "<a" not in markdown_html("[a](javascript:alert(1))")


def _rendered(messages, responses=("A", "B")) -> Tags:
    view = pair_view(
        prompt="(the text rendering)",
        messages=messages,
        responses=[("left", "Response 1", responses[0]), ("right", "Response 2", responses[1])],
    )
    return assert_inert(
        render_to_string("annotation/pages/_pair.html", {"pair": view}), SAFE_TAGS | PAGE_TAGS
    )


def test_hostile_markup_in_every_message_field_and_role_is_inert():
    roles = ["system", "user", "assistant", '<script>pwned("role")</script>', "\" onmouseover='pwned()' x=\""]
    messages = [{"role": role, "content": f"{HOSTILE_TEXT}\n\n{role}"} for role in roles]
    messages.append({"role": "user", "content": HOSTILE_TEXT, HOSTILE[0]: HOSTILE[1]})  # an extra key
    tags = _rendered(messages, (HOSTILE_TEXT, HOSTILE_TEXT))
    # The hostile role is text (and a class name that styles nothing), never markup.
    assert '<script>pwned("role")</script>' in tags.all_text()
    classes = [attrs.get("class", "") for _, attrs in tags.seen]
    assert "turn \" onmouseover='pwned()' x=\"" in classes


def test_a_conversation_shows_roles_the_system_folded_and_long_histories_folded():
    short = [
        {"role": "system", "content": "Be **terse**."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye?"},
    ]
    tags = _rendered(short)
    details = tags.of("details")
    assert details == [{"class": "turn system"}]  # folded: not open
    assert [a["class"] for a in tags.of("div") if a.get("class", "").startswith("turn")] == [
        "turn user",
        "turn assistant",
        "turn user",
    ]
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(FOLD_AFTER + 3)
    ]
    view = pair_view(prompt="-", messages=history, responses=[])
    assert [t.text.text for t in view["recent"]] == [f"turn {FOLD_AFTER + 1}", f"turn {FOLD_AFTER + 2}"]
    assert len(view["earlier"]) == FOLD_AFTER + 1 and view["recent"][-1].role == "user"
    tags = _rendered(history)
    assert {"class": "earlier"} in tags.of("details")
    # At the limit nothing is folded.
    assert pair_view(prompt="-", messages=history[: FOLD_AFTER - 1], responses=[])["earlier"] == []


def test_empty_texts_are_named_not_left_blank():
    view = pair_view(prompt="-", messages=[{"role": "user", "content": ""}], responses=[("a", "A", " \n")])
    assert view["recent"][0].text.marker == "(empty message)"
    assert view["responses"][0].marker == "(only whitespace)"


def test_long_texts_are_rendered_once_then_read_from_the_cache(monkeypatch):
    from annotation.pages import text as module

    history = [
        {"role": "user", "content": "**Hello** " * 1000},
        {"role": "assistant", "content": "Hi " * 4000},
    ]
    history.append({"role": "user", "content": "and?"})
    assert sum(len(m["content"]) for m in history) >= CACHE_FROM
    calls: list[str] = []
    render = module.model_html
    monkeypatch.setattr(module, "model_html", lambda text: calls.append(text) or render(text))
    first = pair_view(prompt="-", messages=history, responses=[("a", "A", "one"), ("b", "B", "two")])
    assert len(calls) == 5
    # The same history with other responses: the history comes from the cache, the responses are rendered.
    second = pair_view(prompt="-", messages=history, responses=[("a", "A", "three"), ("b", "B", "four")])
    assert len(calls) == 7 and calls[-2:] == ["three", "four"]
    assert second["recent"] == first["recent"] and "<strong>Hello</strong>" in first["recent"][0].text.html
    # Another history of the same length is not taken for it.
    other = [{**history[0], "content": "*Hello* " * 1000 + "  "}, *history[1:]]
    third = pair_view(prompt="-", messages=other, responses=[])
    assert "<em>Hello</em>" in third["recent"][0].text.html


def test_no_message_is_ever_left_out_even_one_that_breaks_the_rules():
    messages = [
        {"role": "user", "content": "first"},
        {"role": "system", "content": "a system message out of place"},
        {"role": "user", "content": "last"},
    ]
    view = pair_view(prompt="-", messages=messages, responses=[])
    assert view["system"] is None
    assert [(t.role, t.text.text) for t in view["recent"]] == [(m["role"], m["content"]) for m in messages]
