"""The agreement dashboard of a project, an admin page (ProjectAdmin routes to it; staff only):
progress, the agreement figures with their intervals, the reward model beside the human ceiling (a summary
that reward_models registers at start-up), the arms of uncertainty selection side by side (a second such
summary), and the per-rater table with its flags. The figures come from
the cached report of annotation.selectors.agreement; the charts are drawn server-side (annotation.charts).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from annotation import charts
from annotation.models import Project, Selection
from annotation.selectors import project_agreement
from web.cache import cache_get, cache_set

CHARTS_VERSION = 2
RATERS_SHOWN = 200  # besides the flagged ones: thousands of rows make a page of megabytes
CHART_CACHE_SECONDS = 7 * 24 * 3600


RewardModelSummary = Callable[[Project], dict[str, Any] | None]

# Set by reward_models at start-up (its AppConfig.ready): reward_models builds on annotation, not the other
# way round, so annotation never imports it. Unset, the page shows no reward model.
_reward_model_summary: RewardModelSummary | None = None


def reward_model_summary_register(summary: RewardModelSummary) -> None:
    global _reward_model_summary
    _reward_model_summary = summary


def latest_reward_model(project: Project) -> dict[str, Any] | None:
    """The project's reward model to show beside the raters' agreement, as {"eval_accuracy", "run_id",
    "url"}, or None: whatever the registered summary returns (reward_models: its active model's run, else
    its latest succeeded run)."""
    return _reward_model_summary(project) if _reward_model_summary is not None else None


SelectionSummary = Callable[[Project], dict[str, Any]]

# Set by reward_models at start-up too: what the model side knows of uncertainty selection (the active
# model, the run the priorities come from, the latest priority round, the held-out accuracy per arm).
_selection_summary: SelectionSummary | None = None


def selection_summary_register(summary: SelectionSummary) -> None:
    global _selection_summary
    _selection_summary = summary


def selection_summary(project: Project) -> dict[str, Any]:
    """{"active_run_id", "active_run_url", "priorities_run_id", "round", "eval_by_arm",
    "eval_accuracy_ipw"} from the registered summary (reward_models.admin_views.project_selection); empty
    when none is registered (the page then says no model scored the pairs)."""
    return _selection_summary(project) if _selection_summary is not None else {}


def _percent(value: float | None, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{100 * value:.{digits}f}%"


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


def _interval(interval: tuple[float, float], show: Any = _percent, undefined: str = "undefined") -> str:
    """Both ends, or the defined one with ``undefined`` for the other; empty when neither is defined."""
    low, high = interval
    if not (math.isfinite(low) or math.isfinite(high)):
        return ""
    return " to ".join(show(end) if math.isfinite(end) else undefined for end in (low, high))


def _p_value(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _seconds(ms: float) -> str:
    return "—" if not math.isfinite(ms) else f"{ms / 1000:.1f} s"


def _figure_rows(report: Any) -> list[dict[str, str]]:
    from annotation.agreement.statistics import MIN_SHARED_PAIRS  # numpy: only when a page is drawn

    f = report.figures
    rows = [
        {
            "name": "Percent agreement",
            "value": _percent(f.percent_agreement),
            "interval": _interval(f.percent_agreement_interval),
            "about": "Agreeing share of all pairs of judgments made by different raters on the same pair; "
            "a, b and tie.",
        },
        {
            "name": "Agreement among decisive judgments",
            "value": _percent(f.decisive_agreement),
            "interval": _interval(f.decisive_agreement_interval),
            "about": "The same with ties left out (a or b only): the basis of the ceiling, as a reward "
            "model's accuracy is on decisive judgments."
            + (
                ""
                if math.isfinite(f.decisive_agreement)
                else " Undefined: no decisive judgments to agree on."
            ),
        },
        {
            "name": "Cohen's kappa (mean)",
            "value": _number(f.cohen_kappa),
            "interval": "",
            "about": f"Mean over the rater pairs with a defined kappa: {f.cohen_kappa_rater_pairs:,} rater "
            f"pairs share at least {MIN_SHARED_PAIRS} pairs; {f.cohen_kappa_defined_pairs:,} of them have a "
            "defined kappa (undefined where both raters used one category only).",
        },
        {
            "name": "Fleiss' kappa",
            "value": _number(f.fleiss_kappa),
            "interval": "",
            "about": "Per-pair agreement averaged over pairs, chance from the pooled a / b / tie shares.",
        },
        {
            "name": "Krippendorff's alpha (nominal)",
            "value": _number(f.krippendorff_alpha),
            "interval": _interval(f.krippendorff_alpha_interval, _number),
            "about": "a, b and tie as three unordered categories.",
        },
    ]
    if report.strength_levels > 0:
        rows.append(
            {
                "name": "Krippendorff's alpha (ordinal)",
                "value": _number(f.krippendorff_alpha_ordinal),
                "interval": "",
                "about": "On the signed strength scale, from b much better through tie to a much better; "
                f"from {f.krippendorff_alpha_ordinal_judgments:,} of the {f.judgments:,} judgments (those "
                f"without a strength on the current 1 to {report.strength_levels} scale are left out).",
            }
        )
    rows += [
        {
            "name": "Ceiling accuracy (estimate)",
            "value": _percent(f.ceiling_accuracy),
            "interval": _interval(f.ceiling_accuracy_interval, undefined="no estimate"),
            "about": "What a perfect reward model could score against single decisive judgments, if every "
            "rater is right with the same probability, independently: (1 + √(2p - 1)) / 2 for p the "
            "agreement among decisive judgments." + _ceiling_missing(f),
        },
        {
            "name": "Left side chosen",
            "value": _percent(f.left_rate),
            "interval": "",
            "about": f"Of {f.left_judgments:,} decisive judgments with known sides "
            f"(binomial test against 50%: p {_p_value(f.left_p_value)}).",
        },
        {
            "name": "Longer response chosen",
            "value": _percent(f.longer_rate),
            "interval": "",
            "about": f"Of {f.longer_judgments:,} decisive judgments on pairs whose responses differ "
            "in length.",
        },
    ]
    return rows


def _ceiling_missing(f: Any) -> str:
    """Why the ceiling (or an end of its interval) has no estimate, if so."""
    if not math.isfinite(f.decisive_agreement):
        return " No estimate: no decisive judgments to agree on."
    if not math.isfinite(f.ceiling_accuracy):
        return " No estimate: agreement below 50%, where the model has no solution."
    if not all(math.isfinite(end) for end in f.ceiling_accuracy_interval):
        return " The interval's lower end has no estimate: agreement below 50% there."
    return ""


def _rater_rows(report: Any) -> tuple[list[dict[str, Any]], int]:
    """The flagged raters and the RATERS_SHOWN with the most judgments (the API keeps all), flagged
    first, and how many are left out."""
    rows = []
    ranked = report.rater_rows()  # most judgments first
    kept = [row for index, row in enumerate(ranked) if index < RATERS_SHOWN or row["figures"].flags]
    for row in kept:
        r = row["figures"]
        rows.append(
            {
                "label": charts.plain_label(row["label"]),
                "pseudonym": row["pseudonym"],
                "judgments": f"{r.judgments:,}",
                "agreement": _percent(r.agreement),
                "majority_agreement": _percent(r.majority_agreement),
                "left_rate": _percent(r.left_rate),
                "left_p": _p_value(r.left_p_value),
                "longer_rate": _percent(r.longer_rate),
                "median_time": _seconds(r.median_time_ms),
                "very_fast": _percent(r.very_fast_share, 0),
                "gold_accuracy": _percent(r.gold_accuracy),
                "gold_judgments": r.gold_judgments,
                "flags": [{"code": code.replace("_", " "), "reason": reason} for code, reason in r.flags],
            }
        )
    # Flagged raters first: they are what the page is for.
    return sorted(rows, key=lambda row: not row["flags"]), len(ranked) - len(kept)


def cached_chart(project: Project, kind: str, inputs: Any, draw: Callable[[], str]) -> str:
    """A chart drawn once per distinct input (drawing takes a few hundred milliseconds), from the cache:
    one key per project and chart, holding (digest of the inputs, SVG), overwritten when they change."""
    digest = hashlib.sha256(repr((CHARTS_VERSION, kind, inputs)).encode()).hexdigest()
    key = f"agreement-chart:v{CHARTS_VERSION}:{project.pk}:{kind}"
    cached = cache_get(key)
    if isinstance(cached, tuple) and len(cached) == 2 and cached[0] == digest:
        return str(cached[1])
    svg = draw()
    cache_set(key, (digest, svg), CHART_CACHE_SECONDS)
    return svg


def _charts(project: Project, report: Any, reward_model: dict[str, Any] | None) -> dict[str, str]:
    f = report.figures
    per_day = [(float(day), float(n)) for day, n in f.judgments_per_day]
    days = ", ".join(f"{date(1970, 1, 1) + timedelta(days=day)}: {n}" for day, n in f.judgments_per_day[-14:])
    per_day_svg = cached_chart(
        project,
        "per_day",
        per_day,
        lambda: charts.line_chart(
            {"judgments": per_day}, title="Judgments per day", x_label="day (UTC)", y_label="judgments",
            x_is_date=True,
        ),
    )  # fmt: skip
    bars = [("raters agree (decisive)", f.decisive_agreement), ("ceiling (estimate)", f.ceiling_accuracy)]
    if reward_model is not None:
        bars.append(("reward model (held-out)", float(reward_model["eval_accuracy"])))
    shown = [(label, value) for label, value in bars if math.isfinite(value)]
    accuracy_svg = cached_chart(
        project,
        "accuracy",
        shown,
        lambda: charts.bar_chart(
            shown, title="Reward model against the human ceiling", x_label="", y_label="share",
            value_format="{:.1%}", y_limits=(0, 1.08),
        ),
    )  # fmt: skip
    return {
        "per_day": charts.as_img(per_day_svg, alt=f"Judgments per day (last days: {days or 'none'})."),
        "accuracy": charts.as_img(
            accuracy_svg,
            alt="; ".join(f"{label}: {_percent(value)}" for label, value in bars) + ".",
        ),
    }


ARM_LABELS = (
    ("uncertainty", "Uncertainty"),
    ("random", "Random share"),
    ("default", "Default order (no arm)"),
)


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _serving_lines(project: Project, summary: dict[str, Any]) -> list[str]:
    """Plain sentences: which order the engine serves in, and where the priorities come from."""
    active = summary.get("active_run_id")
    written_by = summary.get("priorities_run_id")
    lines = []
    if project.priorities_at is None:
        if active is None:
            lines.append(
                "Uncertainty selection is chosen, but the project has no active reward model: pairs are "
                "served in the default order until a model is activated and has scored the open pairs."
            )
        else:
            lines.append(
                f"Uncertainty selection is chosen, but the active model (run {active}) has not scored the "
                "pairs yet: pairs are served in the default order until its priorities are written."
            )
    else:
        by = f"run {written_by}" if written_by is not None else "a model"
        lines.append(f"Priorities last written {_utc(project.priorities_at)}, by {by}.")
        if active is None:
            lines.append(
                "The project has no active model any more: the priorities are cleared at the next refresh "
                "(within 5 minutes), and pairs are then served in the default order."
            )
        elif written_by is not None and written_by != active:
            lines.append(
                f"The active model is run {active}: it is scoring the open pairs, and its priorities "
                f"replace run {written_by}'s all at once when it is done. Until then the pairs keep run "
                f"{written_by}'s."
            )
    latest = summary.get("round")
    if isinstance(latest, dict):
        if latest.get("status") in ("queued", "running"):
            lines.append(
                f"Scoring now ({latest['status']}): {latest.get('done', 0):,} of {latest.get('total', 0):,} "
                "pairs scored."
            )
        elif latest.get("status") == "failed":
            reason = str(latest.get("error") or "").rstrip(". ") or "no reason given"
            lines.append(f"The last scoring of the pairs failed: {reason}.")
    return lines


def _arms(project: Project) -> dict[str, Any]:
    """The arms side by side (under uncertainty selection): judgments, agreement (the agreement report on
    each arm's judgments) and the active model's held-out accuracy on each arm's pairs."""
    from annotation.selectors.arms import arm_agreement

    reports = arm_agreement(project)
    summary = selection_summary(project)
    by_arm = summary.get("eval_by_arm") or {}
    rows = []
    for arm, label in ARM_LABELS:
        f = reports[arm].figures
        model = by_arm.get(arm) or {}
        accuracy, pairs = model.get("accuracy"), model.get("pairs")
        if accuracy is None:
            measured = "not measured"
        else:
            measured = _percent(accuracy) + (f" on {pairs:,} pairs" if pairs is not None else "")
        rows.append(
            {
                "arm": label,
                "judgments": f"{f.judgments_total:,}",
                "pairs": f"{f.pairs:,}",
                "percent_agreement": _percent(f.percent_agreement),
                "decisive_agreement": _percent(f.decisive_agreement),
                "krippendorff_alpha": _number(f.krippendorff_alpha),
                "model_accuracy": measured,
            }
        )
    ipw = summary.get("eval_accuracy_ipw")
    return {
        "lines": _serving_lines(project, summary),
        "epsilon": _percent(project.selection_epsilon, 0),
        "rows": rows,
        "accuracy_ipw": _ipw_text(ipw),
        "run_id": summary.get("active_run_id"),
        "run_url": summary.get("active_run_url"),
    }


def _ipw_text(ipw: dict[str, Any] | None) -> str:
    """The inverse-propensity accuracy with what it is worth: its standard error, and Kish's effective
    number of pairs beside the pairs (one large weight makes an estimate of one pair, however many)."""
    if ipw is None:
        return "not measured"
    worth = []
    if ipw.get("standard_error") is not None:
        worth.append(f"standard error {100 * ipw['standard_error']:.1f} points")
    if ipw.get("effective_pairs") is not None and ipw.get("pairs") is not None:
        worth.append(f"worth {ipw['effective_pairs']:.1f} of its {ipw['pairs']:,} pairs")
    return _percent(ipw["accuracy"]) + (f" ({'; '.join(worth)})" if worth else "")


def project_dashboard(request: HttpRequest, project: Project, *, context: dict[str, Any]) -> HttpResponse:
    """The page; ``context`` is the admin's (site header, sidebar, breadcrumbs)."""
    report = project_agreement(project)
    reward_model = latest_reward_model(project)
    progress = report.pairs_complete / report.pairs_total if report.pairs_total else 0.0
    rater_rows, raters_left_out = _rater_rows(report)
    return TemplateResponse(
        request,
        "admin/annotation/project/agreement.html",
        {
            **context,
            "title": f"Agreement: {project.name}",
            "project": project,
            "report": report,
            "progress_percent": _percent(progress, 0),
            "counts": {
                name: f"{value:,}"
                for name, value in {
                    "pairs_complete": report.pairs_complete,
                    "pairs_total": report.pairs_total,
                    "gold_pairs": report.gold_pairs,
                    "judgments_total": report.figures.judgments_total,
                    "pairs": report.figures.pairs,
                    "judgments": report.figures.judgments,
                    "raters": report.figures.raters,
                }.items()
            },
            "figure_rows": _figure_rows(report),
            "rater_rows": rater_rows,
            "raters_left_out": raters_left_out,
            "raters_total": f"{len(report.figures.per_rater):,}",
            "flagged": sum(1 for r in report.figures.per_rater if r.flags),
            "reward_model": reward_model,
            "reward_model_accuracy": _percent(reward_model["eval_accuracy"]) if reward_model else None,
            "ceiling": _percent(report.figures.ceiling_accuracy),
            "ceiling_missing": _ceiling_missing(report.figures).strip(),
            "human_agreement": _percent(report.figures.decisive_agreement),
            "very_fast_seconds": f"{project.very_fast_ms / 1000:g}",
            "charts": _charts(project, report, reward_model),
            "arms": _arms(project) if project.selection == Selection.UNCERTAINTY else None,
        },
    )
