"""The agreement dashboard (an admin page per project) and the charts it draws."""

from __future__ import annotations

import base64
import datetime
import re

import pytest
from django.urls import reverse

from annotation import charts, services
from annotation.pages import dashboard
from tests.test_boundaries import modules_after


def url(project):
    return reverse("admin:annotation_project_agreement", args=[project.pk])


def fill(project, n_pairs, raters):
    services.pairs_import(
        project=project,
        items=[
            {
                "external_id": f"p{i}",
                "prompt": "Prompt",
                "response_a": "x" * (1 + i % 7),
                "response_b": f"y{i}",
            }
            for i in range(n_pairs)
        ],
    )
    services.judgments_import(
        project=project,
        items=[
            {"pair": f"p{i}", "rater": rater, "choice": "ab"[(i * 7 + k) % 3 == 0], "shown_left": "ab"[i % 2]}
            for i in range(n_pairs)
            for k, rater in enumerate(raters)
        ],
    )


def test_the_dashboard_is_for_staff_only(client, make_project, make_user, superuser_client):
    project = make_project()
    assert superuser_client.get(url(project)).status_code == 200
    client.logout()
    assert client.get(url(project)).status_code == 302  # to the admin's login
    client.force_login(make_user())
    response = client.get(url(project))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(make_user(staff=True))  # staff without the permission to view projects
    assert client.get(url(project)).status_code == 403
    assert superuser_client.get("/admin/annotation/project/999999/agreement/").status_code == 404


def test_the_dashboard_is_linked_from_the_project_pages(superuser_client, make_project):
    project = make_project()
    change = superuser_client.get(reverse("admin:annotation_project_change", args=[project.pk]))
    listing = superuser_client.get(reverse("admin:annotation_project_changelist"))
    assert f'href="{url(project)}"' in change.content.decode()
    assert f'href="{url(project)}"' in listing.content.decode()


@pytest.mark.parametrize("size", ["empty", "one judgment", "large"])
def test_the_dashboard_renders_in_a_fixed_number_of_queries(
    superuser_client, make_project, size, django_assert_num_queries
):
    project = make_project(judgments_per_pair=3)
    if size == "one judgment":
        fill(project, 1, ["solo"])
    elif size == "large":
        fill(project, 400, ["r1", "r2", "r3", "r4", "r5"])
    # 1 session, 2 user, 3 project, 4 the cache key (judgment count, last id), 5 judgments (COPY),
    # 6 pairs (COPY), 7 rater names, 8 the project's active model, 9 its latest succeeded run
    with django_assert_num_queries(9):
        response = superuser_client.get(url(project))
    assert response.status_code == 200
    page = response.content.decode()
    assert "No reward model trained yet." in page
    # cached: the figures come from Redis until a judgment arrives
    with django_assert_num_queries(6):
        assert superuser_client.get(url(project)).status_code == 200
    if size == "large":
        assert "2,000 judgments in all" in page and "of <strong>400</strong> pairs complete" in page
        assert page.count('<tr class="flagged">') + page.count("<tr>\n") >= 5


def test_planted_raters_are_flagged_with_their_reason_and_careful_ones_are_not(
    superuser_client, make_project, make_rater
):
    project = make_project()
    services.pairs_import(
        project=project,
        items=[
            {"external_id": f"p{i}", "prompt": "P", "response_a": "short", "response_b": "much longer one"}
            for i in range(30)
        ],
    )
    items = []
    for i in range(30):
        left = "ab"[i % 2]
        truth = "ab"[(i // 2) % 2]
        items += [
            {"pair": f"p{i}", "rater": "lefty", "choice": left, "shown_left": left},
            {"pair": f"p{i}", "rater": "long-lover", "choice": "b", "shown_left": "ab"[(i // 3) % 2]},
            {"pair": f"p{i}", "rater": "careful-1", "choice": truth, "shown_left": left},
            {"pair": f"p{i}", "rater": "careful-2", "choice": truth, "shown_left": "ab"[(i // 4) % 2]},
        ]
    services.judgments_import(project=project, items=items)
    # One who answers in a second: a real rater on the rating path, whose server-measured time on task
    # is milliseconds (the imported raters have no times, so they cannot be too fast).
    services.pairs_import(
        project=project,
        items=[
            {"external_id": f"q{i}", "prompt": "Q", "response_a": "a", "response_b": "b"} for i in range(6)
        ],
    )
    hasty = make_rater(project, username="hasty")
    for _ in range(6):
        assignment = services.assignment_next(project=project, user=hasty).assignment
        services.judgment_record(assignment_id=assignment.pk, user=hasty, choice="left")
    page = superuser_client.get(url(project)).content.decode()
    rows = {
        m.group(1).removesuffix(" (imported)"): m.group(0)
        for m in re.finditer(r"<th scope=\"row\">([^<]+)<br>.*?</tr>", page, re.S)
    }
    assert "too fast" in rows["hasty"] and "100% of 6 timed judgments took under 3 s" in rows["hasty"]
    assert "side bias" in rows["lefty"] and "left side in 100% of 30" in rows["lefty"]
    assert "length bias" in rows["long-lover"] and "longer response in 100% of 30" in rows["long-lover"]
    assert "⚑" not in rows["careful-1"] and "⚑" not in rows["careful-2"]


def test_the_reward_model_slot_shows_the_latest_succeeded_run(superuser_client, make_project):
    from django.utils import timezone

    from reward_models.models import RunStatus, TrainingRun

    project = make_project()
    fill(project, 20, ["r1", "r2", "r3"])
    assert dashboard.latest_reward_model(project) is None
    TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.FAILED, finished_at=timezone.now()
    )
    assert "No reward model trained yet." in superuser_client.get(url(project)).content.decode()
    run = TrainingRun.objects.create(
        project=project,
        config={},
        status=RunStatus.SUCCEEDED,
        finished_at=timezone.now(),
        metrics={"eval_accuracy": 0.6875},
    )
    page = superuser_client.get(url(project)).content.decode()
    run_url = reverse("admin:reward_models_trainingrun_change", args=[run.pk])
    assert f'68.8% (<a href="{run_url}">run {run.pk}</a>)' in page
    assert "No reward model trained yet." not in page


def test_without_a_registered_summary_the_page_shows_no_reward_model(
    superuser_client, make_project, monkeypatch
):
    from django.utils import timezone

    from reward_models.models import RunStatus, TrainingRun

    project = make_project()
    fill(project, 20, ["r1", "r2", "r3"])
    run = TrainingRun.objects.create(
        project=project,
        config={},
        status=RunStatus.SUCCEEDED,
        finished_at=timezone.now(),
        metrics={"eval_accuracy": 0.6875},
    )
    assert dashboard.latest_reward_model(project) is not None  # reward_models registered its summary
    monkeypatch.setattr(dashboard, "_reward_model_summary", None)
    assert dashboard.latest_reward_model(project) is None
    page = superuser_client.get(url(project)).content.decode()
    assert f"run {run.pk}</a>" not in page
    assert "No reward model trained yet." in page


def test_hostile_names_are_escaped_on_the_page_and_in_the_charts(superuser_client, make_project):
    project = make_project()
    services.project_update(project=project, changes={"name": '<script>alert("p")</script>'})
    services.pairs_import(
        project=project,
        items=[
            {
                "external_id": "x",
                "prompt": "P",
                "response_a": "<img src=x onerror=alert(1)>",
                "response_b": "",
            }
        ],
    )
    services.judgments_import(
        project=project,
        items=[
            {"pair": "x", "rater": "<script>alert(1)</script>", "choice": "a"},
            {"pair": "x", "rater": "<b>bold</b>", "choice": "b"},
        ],
    )
    response = superuser_client.get(url(project))
    page = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; (imported)" in page
    assert "script-src 'self'" in response["Content-Security-Policy"]  # the site's policy, unchanged


def test_charts_escape_text_and_keep_a_fixed_size():
    svg = charts.line_chart(
        {"<script>alert(1)</script>": [(1, 2), (2, 3)], "second $x^2$ \x00": [(1, 1), (2, 4)]},
        title="A & B <b>",
        x_label="x",
        y_label="y",
        reference_lines={"ceiling": 0.84},
    )
    assert svg.startswith("<svg") and "<script" not in svg and "&lt;script&gt;" in svg
    assert 'aria-label="A &amp; B &lt;b&gt;"' in svg
    assert "\x00" not in svg and "second $x^2$" in svg  # as text, not TeX
    assert re.search(r'width="504pt" height="216pt"', svg)
    # Readable without colour: the two series differ in dash pattern and marker.
    assert "stroke-dasharray" in svg and svg.count("<defs>") >= 1
    bars = charts.bar_chart(
        [("human", 0.731), ("model", 0.7)], title="t", x_label="", y_label="", value_format="{:.1%}"
    )
    assert "73.1%" in bars and "70.0%" in bars
    img = charts.as_img(bars, alt='"quoted" <alt>')
    assert 'alt="&quot;quoted&quot; &lt;alt&gt;"' in img
    assert base64.b64decode(img.split("base64,")[1].split('"')[0]).decode() == bars
    assert "No data yet" in charts.line_chart({}, title="t", x_label="x", y_label="y")


def test_the_web_app_does_not_import_the_dashboards_libraries_at_start_up():
    imported = modules_after(
        "from config.wsgi import application\n"
        "from django.urls import get_resolver\n"
        "get_resolver().url_patterns\n"
        "import django.contrib.admin; django.contrib.admin.autodiscover()\n"
        "import annotation.charts, annotation.pages.dashboard, annotation.selectors.agreement",
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="1",
    )
    assert "annotation" in imported
    assert not {"matplotlib", "scipy"} & imported


def test_a_project_id_of_anything_but_ascii_digits_is_not_found(superuser_client, make_project):
    from urllib.parse import quote

    project = make_project()
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in str(project.pk))
    arabic_indic = "".join(chr(0x0660 + int(d)) for d in str(project.pk))
    assert superuser_client.get(url(project)).status_code == 200
    for object_id in ["²", fullwidth, arabic_indic, f"00{project.pk}", "0", "1e3", "9" * 30, " 1"]:
        response = superuser_client.get(f"/admin/annotation/project/{quote(object_id)}/agreement/")
        assert response.status_code == 404, object_id


def test_a_one_day_chart_spans_that_day_not_years():
    day = (datetime.date(2026, 11, 1) - datetime.date(1970, 1, 1)).days
    svg = charts.line_chart({"judgments": [(day, 12)]}, title="t", x_label="d", y_label="n", x_is_date=True)
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    years = {int(y) for label in labels for y in re.findall(r"\b(20\d\d)\b", label)}
    assert years == {2026}, labels
    assert labels[:3] == ["31", "Nov", "02"], labels  # a tick a day: Oct 31, Nov 1, Nov 2


def test_the_page_says_what_the_figures_are_over_and_why_one_is_missing(superuser_client, make_project):
    project = make_project(judgments_per_pair=3)
    services.pairs_import(
        project=project,
        items=[
            {"external_id": f"p{i}", "prompt": "P", "response_a": "a", "response_b": "bb"} for i in range(12)
        ]
        + [{"external_id": "g", "prompt": "P", "response_a": "a", "response_b": "bb", "gold": "a"}],
    )
    # Three raters on twelve pairs, all ties: kappa undefined for every rater pair, no decisive agreement.
    services.judgments_import(
        project=project,
        items=[{"pair": f"p{i}", "rater": r, "choice": "tie"} for i in range(12) for r in ("r1", "r2", "r3")],
    )
    page = superuser_client.get(url(project)).content.decode()
    assert "gold pairs count for gold accuracy only" in page
    assert "3 rater pairs share at least 10 pairs; 0 of them have a defined kappa" in page
    assert "no decisive judgments to agree on" in page


def test_an_undefined_ceiling_says_why_and_shows_the_defined_bound():
    from annotation.agreement.report import AgreementFigures

    fields = {name: 0 for name in AgreementFigures.__dataclass_fields__}
    figures = AgreementFigures(
        **{
            **fields,
            "percent_agreement_interval": (0.4, 0.6),
            "krippendorff_alpha_interval": (0.1, 0.2),
            "decisive_agreement": 0.45,
            "decisive_agreement_interval": (0.3, 0.83),
            "ceiling_accuracy": float("nan"),
            "ceiling_accuracy_interval": (float("nan"), 0.908),
            "krippendorff_alpha_ordinal": None,
            "judgments_per_day": (),
            "per_rater": (),
        }
    )
    report = type("Report", (), {"figures": figures, "strength_levels": 0})()
    row = next(r for r in dashboard._figure_rows(report) if r["name"].startswith("Ceiling"))
    assert row["value"] == "—" and "below 50%" in row["about"]
    assert row["interval"] == "no estimate to 90.8%"


def test_rater_labels_lose_bidi_and_format_characters(superuser_client, make_project):
    project = make_project()
    fill(project, 3, ["evil\u202egnp.exe", "zero\u200bwidth\u2066x\u2069"])
    page = superuser_client.get(url(project)).content.decode()
    assert "\u202e" not in page and "\u2066" not in page and "\u200b" not in page
    assert "evilgnp.exe (imported)" in page and "zerowidthx (imported)" in page


def test_a_project_with_many_raters_shows_the_flagged_and_the_busiest(
    superuser_client, make_project, monkeypatch
):
    monkeypatch.setattr(dashboard, "RATERS_SHOWN", 3)
    project = make_project()
    services.pairs_import(
        project=project,
        items=[
            {"external_id": f"p{i}", "prompt": "P", "response_a": "a", "response_b": "b"} for i in range(20)
        ],
    )
    items = [
        {"pair": f"p{i}", "rater": f"busy-{k}", "choice": "ab"[i % 2], "shown_left": "ab"[i // 2 % 2]}
        for k in range(4)
        for i in range(20 - k)
    ]
    items += [{"pair": f"p{i}", "rater": "lefty", "choice": "a", "shown_left": "a"} for i in range(12)]
    items += [{"pair": "p0", "rater": f"once-{k}", "choice": "a"} for k in range(5)]
    services.judgments_import(project=project, items=items)
    page = superuser_client.get(url(project)).content.decode()
    shown = re.findall(r"<th scope=\"row\">([^<]+) \(imported\)<br>", page)
    assert shown[0] == "lefty" and set(shown) == {"lefty", "busy-0", "busy-1", "busy-2"}, shown
    assert "6 more raters, with fewer judgments and no flags, are left out" in page
