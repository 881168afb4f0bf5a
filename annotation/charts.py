"""Small server-side charts for the admin pages: matplotlib draws them to an SVG string.

matplotlib is imported inside the functions (the web process does not load it at start-up) and used
through its object API with the SVG canvas, never pyplot: no global figure state shared by threads.
Every chart has a fixed size, its text is escaped by the SVG writer (and stripped of control
characters and TeX markup here), and its series differ by line style and marker, not by colour alone.
Pages show a chart with :func:`as_img` (an <img> of a data: URI): an SVG shown as an image runs no
script and needs no exception to the site's Content-Security-Policy for its inline styles.
"""

from __future__ import annotations

import base64
import io
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH_IN, HEIGHT_IN = 7.0, 3.0
_LINE_STYLES = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D", "v", "P"]
_REFERENCE_STYLES = [(0, (6, 3)), (0, (1, 2)), (0, (4, 2, 1, 2))]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_TEXT = 80


def clean_text(value: object) -> str:
    """A label as plain text: no control characters (NUL included), at most MAX_TEXT characters."""
    text = plain_label(_CONTROL.sub("", str(value)).replace("\n", " "))
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def plain_label(value: str) -> str:
    """The label without Unicode format characters (category Cf: the bidi embeddings, overrides and
    isolates U+202A-U+202E and U+2066-U+2069, zero-width characters), which can make it read as another."""
    return "".join(ch for ch in value if unicodedata.category(ch) != "Cf")


def _rc() -> dict[str, Any]:
    return {
        "svg.fonttype": "none",  # text stays text: smaller, selectable, escaped by the writer
        "svg.hashsalt": "pairwise",  # the same chart gives the same bytes
        "text.parse_math": False,  # "$x$" in a project's name is not TeX
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


def _figure() -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH_IN, HEIGHT_IN), layout="constrained")


def _svg(figure: Any, title: str) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.StringIO()
    FigureCanvasSVG(figure).print_svg(buffer, metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # no XML prolog or DOCTYPE: the string goes inside a page
    return svg.replace("<svg", f'<svg role="img" aria-label="{escape(clean_text(title))}"', 1)


def _reference(axes: Any, reference_lines: dict[str, float] | None, *, horizontal: bool = True) -> None:
    for index, (label, value) in enumerate((reference_lines or {}).items()):
        style = _REFERENCE_STYLES[index % len(_REFERENCE_STYLES)]
        text = f"{clean_text(label)}: {value:.3g}"
        if horizontal:
            axes.axhline(value, color="0.35", linewidth=1, linestyle=style, label=text)
        else:
            axes.axvline(value, color="0.35", linewidth=1, linestyle=style, label=text)


def _empty(axes: Any) -> None:
    axes.text(0.5, 0.5, "No data yet", ha="center", va="center", transform=axes.transAxes, color="0.3")


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    reference_lines: dict[str, float] | None = None,
    x_is_date: bool = False,
    y_limits: tuple[float, float] | None = None,
) -> str:
    """Lines of (x, y) points, one style and marker per series, with labelled horizontal reference lines.
    ``x_is_date``: x counts days since 1970-01-01 and the axis shows dates."""
    with _rc_context():
        figure = _figure()
        axes = figure.add_subplot()
        drawn = False
        for index, (name, points) in enumerate(series.items()):
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            axes.plot(
                xs,
                ys,
                linestyle=_LINE_STYLES[index % len(_LINE_STYLES)],
                marker=_MARKERS[index % len(_MARKERS)],
                markersize=3.5,
                linewidth=1.4,
                label=clean_text(name),
            )
            drawn = True
        if not drawn:
            _empty(axes)
        _reference(axes, reference_lines)
        if x_is_date and drawn:
            _date_axis(axes, [x for points in series.values() for x, _ in points])
        if y_limits is not None:
            axes.set_ylim(*y_limits)
        _labels(axes, title, x_label, y_label)
        if drawn and (len(series) > 1 or reference_lines):
            axes.legend(loc="best", frameon=False)
        return _svg(figure, title)


def _date_axis(axes: Any, days: Sequence[float]) -> None:
    """x as dates from the data's own span, padded a day each side (matplotlib's limits for a single
    point span years), with a tick a day while that fits and automatic date ticks beyond."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, DayLocator

    low, high = min(days) - 1, max(days) + 1
    axes.set_xlim(low, high)
    span = high - low
    locator: Any = DayLocator() if span <= 14 else AutoDateLocator(minticks=3, maxticks=8)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))


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
    """Vertical bars with their value written on each (readable in greyscale), and reference lines."""
    with _rc_context():
        figure = _figure()
        axes = figure.add_subplot()
        if bars:
            labels = [clean_text(label) for label, _ in bars]
            values = [float(value) for _, value in bars]
            drawn = axes.bar(range(len(values)), values, color="0.55", edgecolor="0.1", linewidth=0.8)
            axes.bar_label(drawn, labels=[value_format.format(v) for v in values], padding=2)
            axes.set_xticks(range(len(values)), labels)
        else:
            _empty(axes)
        _reference(axes, reference_lines)
        if y_limits is not None:
            axes.set_ylim(*y_limits)
        _labels(axes, title, x_label, y_label)
        if reference_lines:
            axes.legend(loc="lower right", frameon=False)
        return _svg(figure, title)


def _labels(axes: Any, title: str, x_label: str, y_label: str) -> None:
    axes.set_title(clean_text(title), loc="left")
    axes.set_xlabel(clean_text(x_label))
    axes.set_ylabel(clean_text(y_label))


def _rc_context() -> Any:
    from matplotlib import rc_context

    return rc_context(_rc())  # type: ignore[arg-type]


def as_img(svg: str, *, alt: str) -> SafeString:
    """An <img> of the SVG (a data: URI, which the site's policy allows for images), with its alt text."""
    data = base64.b64encode(svg.encode()).decode()
    alt_text = escape(_CONTROL.sub("", alt))
    return mark_safe(f'<img class="chart" src="data:image/svg+xml;base64,{data}" alt="{alt_text}">')


def interval_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[tuple[float, float, float]]],
    *,
    title: str,
    x_label: str,
    anchor: tuple[str, float] | None = None,
) -> str:
    """One row per label, top to bottom: each series' (value, lower, upper) as a point with its interval,
    the series apart by marker and a small vertical offset, and a labelled vertical line at ``anchor``.
    The height grows with the rows."""
    with _rc_context():
        figure = _figure()
        figure.set_size_inches(
            WIDTH_IN, max(HEIGHT_IN, 0.28 * len(labels) * max(1, len(series)) ** 0.5 + 1.2)
        )
        axes = figure.add_subplot()
        if not labels:
            _empty(axes)
        offsets = (
            [0.0] if len(series) < 2 else [0.15 * (i - (len(series) - 1) / 2) for i in range(len(series))]
        )
        for index, (name, points) in enumerate(series.items()):
            rows = [(row, value, low, high) for row, (value, low, high) in enumerate(points)]
            if not rows:
                continue
            ys = [len(labels) - 1 - row + offsets[index] for row, *_ in rows]
            values = [value for _, value, _, _ in rows]
            # The bar from its bounds, the point apart: a percentile bootstrap interval need not hold
            # the fitted rating (nor, at width 0, hold it to the last bit), and errorbar refuses the
            # negative error that the point's distance to a bound would then be.
            middles = [(low + high) / 2 for _, _, low, high in rows]
            halves = [max(0.0, (high - low) / 2) for _, _, low, high in rows]
            color = str(0.1 + 0.35 * index)
            axes.errorbar(middles, ys, xerr=halves, fmt="none", capsize=2, linewidth=1, color=color)
            axes.plot(
                values, ys, _MARKERS[index % len(_MARKERS)], markersize=4, color=color, label=clean_text(name)
            )
        if anchor is not None:
            name, value = anchor
            axes.axvline(
                value, color="0.35", linewidth=1, linestyle=_REFERENCE_STYLES[0], label=clean_text(name)
            )
        axes.set_yticks(range(len(labels)), [_short(label) for label in reversed(labels)])
        _labels(axes, title, x_label, "")
        if labels and (len(series) > 1 or anchor is not None):
            axes.legend(loc="lower right", frameon=False)
        return _svg(figure, title)


def heat_map(labels: Sequence[str], values: Sequence[Sequence[float]], *, title: str, label: str) -> str:
    """A square matrix (row against column) in shades of grey from 0 to 1, blank where undefined, with
    each value written in its cell while the cells are large enough to hold it."""
    import numpy as np

    with _rc_context():
        figure = _figure()
        side = min(9.0, max(4.5, 0.3 * len(labels) + 2.5))
        figure.set_size_inches(side + 1.2, side)
        axes = figure.add_subplot()
        if not labels:
            _empty(axes)
            _labels(axes, title, "", "")
            return _svg(figure, title)
        matrix = np.ma.masked_invalid(np.array(values, dtype=float))
        image = axes.imshow(matrix, cmap="Greys", vmin=0, vmax=1)
        figure.colorbar(image, ax=axes, label=clean_text(label), shrink=0.8)
        names = [_short(name) for name in labels]
        axes.set_xticks(range(len(names)), names, rotation=90)
        axes.set_yticks(range(len(names)), names)
        if len(labels) <= 15:
            for (row, column), value in np.ndenumerate(matrix.filled(np.nan)):
                if np.isfinite(value):
                    axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                              color="white" if value > 0.6 else "black")  # fmt: skip
        _labels(axes, title, "against (column)", "model (row)")
        return _svg(figure, title)


def _short(label: str, limit: int = 24) -> str:
    """A tick label short enough to leave the chart its room."""
    text = clean_text(label)
    return text if len(text) <= limit else text[: limit - 1] + "…"
