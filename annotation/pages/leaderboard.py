"""The leaderboard of a project's models, an admin page (ProjectAdmin routes to it; staff only): the
ratings with their intervals beside the style-controlled ones, as a table and a chart, and the win-rate and
predicted-win matrices as heat maps. The figures come from the cached report of
annotation.selectors.leaderboard; the charts are drawn server-side (annotation.charts) and cached as the
dashboard's are.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from annotation import charts
from annotation.models import Project
from annotation.pages.dashboard import cached_chart
from annotation.selectors import ExportFilter, LeaderboardOptions, project_leaderboard
from web.errors import Invalid

HEAT_MAP_MODELS = 40  # the heat maps show the best this many: beyond, cells are too small to read


def _options(request: HttpRequest) -> tuple[ExportFilter, LeaderboardOptions, list[str]]:
    """The page's filters and options from its query string, checked by the API's serializer; with errors,
    the defaults and the errors' words."""
    from annotation.api.serializers import LeaderboardQuerySerializer

    given = request.GET.copy()  # a QueryDict: its values are text, parsed as a query string's
    for name in [name for name, value in given.items() if value == ""]:  # the form's "mean" option
        del given[name]
    query = LeaderboardQuerySerializer(data=given)
    if not query.is_valid():
        errors = [f"{field}: {' '.join(map(str, words))}" for field, words in query.errors.items()]
        return ExportFilter(), LeaderboardOptions(), errors
    data = dict(query.validated_data)
    options = LeaderboardOptions(
        reference=data.pop("reference", None),
        **{name: data.pop(name) for name in ("style", "exclude_flagged", "seed", "rounds")},
    )
    return ExportFilter(**data), options, []


def _query_string(filters: ExportFilter, options: LeaderboardOptions) -> str:
    """The filters and options that differ from the defaults, as the API's query string: the page's links
    to the JSON and the downloads give the board it shows."""
    defaults = LeaderboardOptions()
    given: dict[str, Any] = {
        "since": filters.since.isoformat() if filters.since else None,
        "until": filters.until.isoformat() if filters.until else None,
        "min_votes": filters.min_votes,
        "reference": options.reference,
    }
    for name in ("style", "exclude_flagged", "seed", "rounds"):
        value = getattr(options, name)
        if value != getattr(defaults, name):
            given[name] = str(value).lower() if isinstance(value, bool) else value
    return urlencode({name: value for name, value in given.items() if value is not None})


def _points(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.0f}"


def project_leaderboard_page(
    request: HttpRequest, project: Project, *, context: dict[str, Any]
) -> HttpResponse:
    """The page; ``context`` is the admin's (site header, sidebar, breadcrumbs)."""
    filters, options, errors = _options(request)
    try:
        report = project_leaderboard(project, filters=filters, options=options)
    except Invalid as error:  # a reference that is not a model: the board anchored at the mean
        errors.append(str(error.detail))
        options = LeaderboardOptions(**{**options.__dict__, "reference": None})
        report = project_leaderboard(project, filters=filters, options=options)
    rows = report.model_rows()
    board = report.board
    labels = [row["model"] for row in rows]
    order = [board.models.index(label) for label in labels]
    series = {"plain": [(row["rating"], row["lower"], row["upper"]) for row in rows]}
    if board.style is not None:
        series["style-controlled"] = [
            (row["style_rating"], row["style_lower"], row["style_upper"]) for row in rows
        ]
    anchor = (f"{options.reference or 'mean of the models'} at 1000", 1000.0)
    intervals = cached_chart(
        project,
        "leaderboard-intervals",
        (labels, series, anchor),
        lambda: charts.interval_chart(
            labels, series, title="Ratings with 95% intervals", x_label="rating", anchor=anchor
        ),
    )
    shown = order[:HEAT_MAP_MODELS]

    def heat(kind: str, values: Any, title: str) -> str:
        matrix = [[float(values[i, j]) for j in shown] for i in shown]
        inputs = (
            labels[: len(shown)],
            [[round(v, 6) if math.isfinite(v) else None for v in r] for r in matrix],
        )
        svg = cached_chart(
            project,
            f"leaderboard-{kind}",
            inputs,
            lambda: charts.heat_map(labels[: len(shown)], matrix, title=title, label="share"),
        )
        return charts.as_img(svg, alt=f"{title}: the JSON download has every value.")

    return TemplateResponse(
        request,
        "admin/annotation/project/leaderboard.html",
        {
            **context,
            "title": f"Leaderboard: {project.name}",
            "project": project,
            "report": report,
            "errors": errors,
            "options": options,
            "filters": report.filters,
            "query": _query_string(filters, options),
            "model_options": [(model, charts.plain_label(model)) for model in board.models],
            "rows": [
                {
                    **row,
                    "model": charts.plain_label(row["model"]),
                    "rating_text": _points(row["rating"]),
                    "interval_text": f"{_points(row['lower'])} to {_points(row['upper'])}",
                    "rank_text": _rank(row["rank"], row["rank_worst"]),
                    "style_text": _points(row["style_rating"]),
                    "style_interval_text": f"{_points(row['style_lower'])} to {_points(row['style_upper'])}"
                    if row["style_rating"] is not None
                    else "",
                    "style_rank_text": _rank(row["style_rank"], row["style_rank_worst"])
                    if row["style_rank"] is not None
                    else "—",
                }
                for row in rows
            ],
            "style_coefficients": []
            if board.style_coefficients is None
            else [
                {"name": name.replace("_", " "), "value": f"{value:+.0f}"}
                for name, value in zip(
                    ("length", "headers", "list_items", "bold"), board.style_coefficients, strict=True
                )
            ],
            "heat_maps_cut": len(order) > HEAT_MAP_MODELS,
            "heat_map_models": HEAT_MAP_MODELS,
            "charts": {
                "intervals": charts.as_img(
                    intervals,
                    alt="Ratings: "
                    + "; ".join(
                        f"{charts.clean_text(row['model'])} {_points(row['rating'])}" for row in rows[:20]
                    )
                    + ("." if len(rows) <= 20 else "; the table has the rest."),
                ),
                "win_rate": heat("win-rate", board.win_rate, "Observed win rate (ties half)"),
                "predicted_win": heat("predicted", board.predicted_win, "Predicted win probability"),
            },
        },
    )


def _rank(best: int, worst: int) -> str:
    return str(best) if best == worst else f"{best} to {worst}"
