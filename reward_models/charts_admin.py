"""The charts of the training-run admin pages, behind the two calls of ``annotation.charts`` (issue 10):
``line_chart`` and ``bar_chart`` return an SVG string, ``as_img`` shows one as an <img> of a data: URI.

That module is built on another branch; until it is merged this one draws with matplotlib itself (same
signatures), and at merge these three functions become re-exports of ``annotation.charts``.
matplotlib is imported inside the functions (never at the web process's start) and used through its object
API with the SVG canvas, not pyplot, so threads share no figure. Text goes in stripped of control characters
(NUL is not XML) and with TeX off, and the SVG writer escapes it; shown as an image, the SVG runs no script
and its inline styles need no exception to the site's Content-Security-Policy.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MAX_TEXT = 80
_LINE_STYLES = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D", "v"]
_REFERENCE_STYLES = [(0, (6, 3)), (0, (1, 2)), (0, (4, 2, 1, 2))]
_RC = {
    "svg.fonttype": "none",  # text stays text, escaped by the SVG writer
    "svg.hashsalt": "pairwise",  # the same chart gives the same bytes
    "text.parse_math": False,  # "$x$" in a model's name is not TeX
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def clean_text(value: object) -> str:
    """A label as plain text: no control characters, one line, at most _MAX_TEXT characters."""
    text = _CONTROL.sub("", str(value).replace("\n", " "))
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    reference_lines: dict[str, float] | None = None,
    y_limits: tuple[float, float] | None = None,
) -> str:
    """Lines of (x, y) points, told apart by line style and marker, with labelled horizontal references."""
    from matplotlib import rc_context

    with rc_context(_RC):  # type: ignore[arg-type]
        figure, axes = _figure()
        drawn = False
        for index, (name, points) in enumerate(series.items()):
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            axes.plot(
                xs,
                ys,
                linestyle=_LINE_STYLES[index % len(_LINE_STYLES)],
                marker=_MARKERS[index % len(_MARKERS)] if len(points) <= 60 else None,
                markersize=3.5,
                linewidth=1.4,
                label=clean_text(name),
            )
            drawn = True
        if not drawn:
            _empty(axes)
        _references(axes, reference_lines)
        if y_limits is not None:
            axes.set_ylim(*y_limits)
        _labels(axes, title, x_label, y_label)
        if drawn and (len(series) > 1 or reference_lines):
            axes.legend(loc="best", frameon=False)
        return _svg(figure, title)


def bar_chart(
    bars: Sequence[tuple[str, float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    reference_lines: dict[str, float] | None = None,
    value_format: str = "{:.3g}",
    y_limits: tuple[float, float] | None = None,
) -> str:
    """Vertical bars with their value written on each, and labelled horizontal references."""
    from matplotlib import rc_context

    with rc_context(_RC):  # type: ignore[arg-type]
        figure, axes = _figure()
        if bars:
            values = [float(value) for _, value in bars]
            drawn = axes.bar(range(len(values)), values, color="0.6", edgecolor="0.1", linewidth=0.8)
            axes.bar_label(drawn, labels=[value_format.format(v) for v in values], padding=2)
            axes.set_xticks(range(len(values)), [clean_text(label) for label, _ in bars])
        else:
            _empty(axes)
        _references(axes, reference_lines)
        if y_limits is not None:
            axes.set_ylim(*y_limits)
        _labels(axes, title, x_label, y_label)
        if reference_lines:
            axes.legend(loc="lower right", frameon=False)
        return _svg(figure, title)


def as_img(svg: str, *, alt: str) -> SafeString:
    """An <img> of the SVG (a data: URI, which the site's policy allows for images), with its alt text."""
    data = base64.b64encode(svg.encode()).decode()
    return mark_safe(  # base64 and an escaped alt only
        f'<img class="chart" src="data:image/svg+xml;base64,{data}" alt="{escape(clean_text(alt))}">'
    )


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 3.0), layout="constrained")
    return figure, figure.add_subplot()


def _empty(axes: Any) -> None:
    axes.text(0.5, 0.5, "No data yet", ha="center", va="center", transform=axes.transAxes, color="0.3")


def _references(axes: Any, reference_lines: dict[str, float] | None) -> None:
    for index, (label, value) in enumerate((reference_lines or {}).items()):
        style = _REFERENCE_STYLES[index % len(_REFERENCE_STYLES)]
        axes.axhline(
            value, color="0.35", linewidth=1, linestyle=style, label=f"{clean_text(label)}: {value:.3g}"
        )


def _labels(axes: Any, title: str, x_label: str, y_label: str) -> None:
    axes.set_title(clean_text(title), loc="left")
    axes.set_xlabel(clean_text(x_label))
    axes.set_ylabel(clean_text(y_label))


def _svg(figure: Any, title: str) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.StringIO()
    FigureCanvasSVG(figure).print_svg(buffer, metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # no XML prolog or DOCTYPE: the string may go inside a page
    return svg.replace("<svg", f'<svg role="img" aria-label="{escape(clean_text(title))}"', 1)
