"""How text is put on the pages: model text and the project's instructions as safe markdown.

CommonMark with raw HTML off (markdown-it-py): any tag in a text is shown as text, never parsed. Model text
(prompts, conversation messages, responses) also gets tables and strikethrough, links only to http(s) and
mailto (opened beside the page, without referrer), and images never loaded: an image is shown as its alt
text and address, as text. Every page that shows a pair (the rating page, the fragment rate.js loads for
the next pair, the admin's preview) renders it through `pair_view`, so they all show the same thing.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from django.utils.html import escape
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from web.cache import cache_get, cache_set

# A conversation longer than this (messages other than the system one) shows only its last two messages
# open; the earlier ones are folded behind one summary. Two: the model's last answer and the user's turn
# being answered, the context a rater needs first.
FOLD_AFTER = 4
KEEP_OPEN = 2

ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}

# Model text may link to the web and to mail addresses, nothing else: no javascript:, data:, file:, and
# no relative link into this site (a response must not steer a rater to one of our own pages).
_LINK_SCHEMES = ("http://", "https://", "mailto:")


def is_blank(text: str) -> bool:
    return not text.strip()


def _link_open(self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    # Links open beside the rating page, so a rater never loses the pair in hand, and the other site
    # learns nothing of it (no opener, no referrer).
    tokens[idx].attrSet("target", "_blank")
    tokens[idx].attrSet("rel", "noopener noreferrer")
    return self.renderToken(tokens, idx, options, env)


def _image_as_text(
    self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # Never loaded (a model's image could track the rater, and the CSP refuses other origins anyway): the
    # rater reads what it would have shown and where from.
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    src = str(token.attrGet("src") or "")
    return f'<span class="image-ref">[image: {escape(alt)}] &lt;{escape(src)}&gt;</span>'


def _loads_here(address: str) -> bool:
    """Whether the page's CSP (img-src 'self' data:) lets an image at this address load: this site's own
    paths and data: URLs, not another origin."""
    parts = urlsplit(address.strip())
    return parts.scheme.lower() == "data" or (not parts.scheme and not parts.netloc)


def _instruction_image(
    self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # An image of the instructions from another site (the CSP blocks it) is shown as text, as in model
    # text, not as a broken image; this site's images and data: images load.
    if _loads_here(str(tokens[idx].attrGet("src") or "")):
        return self.image(tokens, idx, options, env)
    return _image_as_text(self, tokens, idx, options, env)


def _cell_open(self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    # A column's alignment as a class: markdown-it writes it as a style attribute, which the page's CSP
    # (style-src 'self') refuses, and reports.
    token = tokens[idx]
    style = str(token.attrGet("style") or "")
    if style.startswith("text-align:"):
        token.attrs.pop("style")
        token.attrSet("class", "align-" + style.removeprefix("text-align:"))
    return self.renderToken(tokens, idx, options, env)


def _model_link(url: str) -> bool:
    return url.strip().lower().startswith(_LINK_SCHEMES)


# The project's instructions: written by the project's admin; markdown-it refuses javascript:, vbscript:,
# file: and data: links (other than data: images), so those stay text.
_instructions = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_instructions.add_render_rule("link_open", _link_open)
_instructions.add_render_rule("image", _instruction_image)

_model = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_model.enable(["table", "strikethrough"])
_model.validateLink = _model_link  # type: ignore[method-assign]  # a link it refuses stays text
_model.add_render_rule("link_open", _link_open)
_model.add_render_rule("image", _image_as_text)
_model.add_render_rule("th_open", _cell_open)
_model.add_render_rule("td_open", _cell_open)


def markdown_html(source: str) -> str:
    """The project's instructions as HTML that holds no script, event handler or raw tag."""
    return _instructions.render(source)


def model_html(text: str) -> str:
    """Model text (a response, a message) as HTML that holds no script, event handler, raw tag, loaded
    image or link other than http(s) and mailto."""
    return _model.render(text)


class Text(NamedTuple):
    """One text as the pages show it: rendered markdown, and the text itself for the plain view."""

    id: str
    title: str
    text: str
    html: str
    # What the page says instead of a text that shows nothing ("(empty response)"), else "".
    marker: str


def text_view(key: str, title: str, text: str, noun: str = "response", html: str | None = None) -> Text:
    """html: the text's model_html when known (rendered_many), else rendered here."""
    if is_blank(text):
        return Text(key, title, text, "", f"(empty {noun})" if text == "" else "(only whitespace)")
    return Text(key, title, text, model_html(text) if html is None else html, "")


# Texts shorter than this in all render in a few milliseconds; a long conversation's take a second (the
# markdown parser is pure Python), and the same history comes with many pairs and to several raters.
CACHE_FROM = 20_000
_CACHE_VERSION = "1"  # raise it when the rendering changes, so no page shows an older one


def rendered_many(texts: list[str]) -> list[str]:
    """model_html of each text, from the cache when the texts are long (web.cache: a miss while it is
    down)."""
    if sum(len(text) for text in texts) < CACHE_FROM:
        return [model_html(text) for text in texts]
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
        digest.update(b"%d:" % len(encoded))  # length-prefixed: ("ab", "") and ("a", "b") differ
        digest.update(encoded)
    key = f"pairwise:markdown:{_CACHE_VERSION}:{digest.hexdigest()}"
    cached = cache_get(key)
    if isinstance(cached, list) and len(cached) == len(texts):
        return cached
    rendered = [model_html(text) for text in texts]
    cache_set(key, rendered, 24 * 3600)
    return rendered


class Turn(NamedTuple):
    role: str  # system, user or assistant (validated on import)
    name: str
    text: Text


def pair_view(
    *, prompt: str, messages: list[dict[str, Any]] | None, responses: list[tuple[str, str, str]]
) -> dict[str, Any]:
    """What `_pair.html` shows: the prompt (a plain text, or a conversation as turns: the system message,
    the earlier turns folded when the history is long, the recent ones) and the responses, each given as
    (id, title, text)."""
    # str(): a message edited by hand in the admin's JSON must still show, whatever it holds.
    said = [(str(m.get("role", "")), str(m.get("content", ""))) for m in messages or []]
    prompt_texts = [content for _, content in said] if messages is not None else [prompt]
    # Apart: a conversation comes with several pairs, each with its own responses.
    html = rendered_many([text for _, _, text in responses])
    view: dict[str, Any] = {
        "responses": [text_view(*response, html=html[i]) for i, response in enumerate(responses)],
        "conversation": messages is not None,
    }
    html = rendered_many(prompt_texts)
    if messages is None:
        view["prompt"] = text_view("prompt", "Prompt", prompt, "prompt", html[0])
        return view
    turns = [
        Turn(role, ROLE_NAMES.get(role, role), text_view(f"m{i}", role, content, "message", html[i]))
        for i, (role, content) in enumerate(said)
    ]
    # The system message is the first (validated on import); one anywhere else shows where it is.
    system = turns[0] if turns and turns[0].role == "system" else None
    history = turns[1:] if system else turns
    fold = len(history) > FOLD_AFTER
    view.update(
        system=system,
        earlier=history[:-KEEP_OPEN] if fold else [],
        recent=history[-KEEP_OPEN:] if fold else history,
        turn_count=len(history),
    )
    return view


def unloadable_images(source: str) -> list[tuple[str, str]]:
    """(alt text, address) of each markdown image in the instructions that the rating page will not load:
    its Content-Security-Policy (annotation.pages.security) loads images from this site and data: URLs
    only, so one from another site shows as text (its alt and address) instead. Read by the same parser
    as :func:`markdown_html`, so what is reported is what the page would show."""
    found = []
    for block in _instructions.parse(source):
        for token in block.children or []:
            if token.type == "image":
                address = str(token.attrGet("src") or "")
                if not _loads_here(address):
                    found.append((token.content, address))
    return found
