"""How text is put on the rating page: model text as text, the project's instructions as safe markdown.

Model text (prompts and responses) is never parsed as HTML or markdown: it is split into prose and fenced
code blocks (the fence lines stay, so the rater reads exactly what the model wrote) and each piece is
escaped by the template. The rating page's script splits the pairs it loads by the same rule (`segments`
in static/pairwise/text.js); a browser test holds both to the same output.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

# A fence opens with three or more backticks or tildes, indented by at most three spaces (CommonMark).
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


class Segment(NamedTuple):
    kind: Literal["prose", "code"]
    text: str


def segments(text: str) -> list[Segment]:
    """Prose and fenced code blocks, in order; an unclosed fence runs to the end (as in CommonMark)."""
    pieces: list[Segment] = []
    lines: list[str] = []
    fence = ""  # the opening fence while inside a code block

    def flush(kind: Literal["prose", "code"]) -> None:
        chunk = "\n".join(lines)
        if chunk.strip("\n"):
            pieces.append(Segment(kind, chunk.strip("\n")))
        lines.clear()

    for line in text.replace("\r\n", "\n").split("\n"):
        match = _FENCE.match(line)
        if not fence and match:
            flush("prose")
            fence = match.group(1)
            lines.append(line)
        elif (
            fence
            and match
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
            and (line.strip() == match.group(1))
        ):
            lines.append(line)
            flush("code")
            fence = ""
        else:
            lines.append(line)
    flush("code" if fence else "prose")
    return pieces


def is_blank(text: str) -> bool:
    return not text.strip()


def _link_open(self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    # Links in the instructions open beside the rating page, so a rater never loses the pair in hand.
    tokens[idx].attrSet("target", "_blank")
    tokens[idx].attrSet("rel", "noopener noreferrer")
    return self.renderToken(tokens, idx, options, env)


# CommonMark with raw HTML off: any tag in the instructions is shown as text. markdown-it refuses
# javascript:, vbscript:, file: and data: links (other than data: images), so those stay text too.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_markdown.add_render_rule("link_open", _link_open)


def markdown_html(source: str) -> str:
    """The project's instructions as HTML that holds no script, event handler or raw tag."""
    return _markdown.render(source)


def unloadable_images(source: str) -> list[tuple[str, str]]:
    """(alt text, address) of each markdown image in the instructions that the rating page will not show:
    its Content-Security-Policy (annotation.pages.security) loads images from this site and data: URLs
    only, and this site serves no images of the project's, so any other address is a broken image. Read
    by the same parser as :func:`markdown_html`, so what is reported is what the page would try to load."""
    found = []
    for block in _markdown.parse(source):
        for token in block.children or []:
            if token.type == "image":
                address = str(token.attrGet("src") or "")
                if not address.startswith("data:"):
                    found.append((token.content, address))
    return found
