"""The leaderboard page (an admin page per project) and the charts it draws."""

from __future__ import annotations

import base64
import re

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation import charts, services
from tests.annotation.test_leaderboard_api import import_battles


def url(project):
    return reverse("admin:annotation_project_leaderboard", args=[project.pk])


def test_the_leaderboard_is_for_staff_only(client, make_project, make_user, superuser_client):
    project = make_project()
    assert superuser_client.get(url(project)).status_code == 200
    client.logout()
    response = client.get(url(project))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(make_user())  # a rater
    response = client.get(url(project))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(make_user(staff=True))  # staff without the permission to view projects
    assert client.get(url(project)).status_code == 403
    assert superuser_client.get("/admin/annotation/project/999999/leaderboard/").status_code == 404


def test_the_leaderboard_is_linked_from_the_project_and_its_dashboard(superuser_client, make_project):
    project = make_project()
    change = superuser_client.get(reverse("admin:annotation_project_change", args=[project.pk]))
    dashboard = superuser_client.get(reverse("admin:annotation_project_agreement", args=[project.pk]))
    assert f'href="{url(project)}"' in change.content.decode()
    assert f'href="{url(project)}"' in dashboard.content.decode()


def test_the_page_shows_the_ratings_the_charts_and_the_options(superuser_client, make_project):
    project = make_project("arena")
    import_battles(project)
    page = superuser_client.get(url(project)).content.decode()
    assert page.index(">alpha</th>") < page.index(">beta</th>") < page.index(">gamma</th>")
    assert "90 battles" in page and "96 judgments" in page
    assert page.count('<img class="chart"') == 3
    assert "Style coefficients" in page
    anchored = superuser_client.get(url(project), {"reference": "gamma", "exclude_flagged": "true"})
    text = anchored.content.decode()
    assert '<option value="gamma" selected>' in text and 'name="exclude_flagged" value="true" checked' in text
    rows = re.findall(r'>gamma</th><td class="num">(\d+)</td>', text)
    assert rows == ["1000"]
    # The JSON and the downloads give the board shown, not the default one.
    for link in ("leaderboard/", "export/leaderboard.csv", "export/leaderboard.json"):
        assert f'href="/api/v1/projects/arena/{link}?reference=gamma&amp;exclude_flagged=true"' in text
    assert 'href="/api/v1/projects/arena/export/leaderboard.csv"' in page  # the defaults: no query
    # A bad option says so and shows the default board.
    bad = superuser_client.get(url(project), {"reference": "nobody", "rounds": "lots"}).content.decode()
    assert bad.count('class="errornote"') == 1 and "rounds:" in bad and ">alpha</th>" in bad
    unknown = superuser_client.get(url(project), {"reference": "nobody"}).content.decode()
    assert "No model named" in unknown and ">alpha</th>" in unknown


def test_the_page_renders_in_a_fixed_number_of_queries(superuser_client, make_project):
    counts = []
    for n_pairs in (4, 40):  # 12 and 120 judgments
        project = make_project(f"size{n_pairs}")
        import_battles(project, n_pairs=n_pairs)
        with CaptureQueriesContext(connection) as captured:
            assert superuser_client.get(url(project)).status_code == 200
        counts.append(len(captured))
    # 1 session, 2 user, 3 project, 4 fingerprint, 5 judgments (COPY), 6 model names, 7 pairs' ids and
    # model numbers (COPY), 8 their texts (a cursor, for style control)
    assert counts == [8, 8]


def test_hostile_model_names_are_escaped_on_the_page_and_in_the_charts(superuser_client, make_project):
    project = make_project()
    import_battles(project, models={"<script>alert(1)</script>": 1.0, "\u202eevil": 0.0})
    page = superuser_client.get(url(project)).content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\u202e" not in page.split('<form method="get"')[1].split("</form>")[1]
    for svg in re.findall(r'base64,([^"]+)"', page):
        assert "<script>" not in base64.b64decode(svg).decode()


def test_the_charts_draw_intervals_and_heat_maps():
    svg = charts.interval_chart(
        ["a", "<b>"],
        {"plain": [(1010, 990, 1030), (980, 960, 1000)], "style": [(1000, 980, 1020), (990, 970, 1010)]},
        title="Ratings",
        x_label="rating",
        anchor=("mean at 1000", 1000),
    )
    assert svg.startswith("<svg") and "&lt;b&gt;" in svg and "<b>" not in svg
    heat = charts.heat_map(["a", "b"], [[float("nan"), 0.7], [0.3, float("nan")]], title="Win", label="share")
    assert "0.70" in heat and "0.30" in heat
    assert "No data yet" in charts.heat_map([], [], title="t", label="share")
    assert "No data yet" in charts.interval_chart([], {"plain": []}, title="t", x_label="x")


def test_an_interval_that_leaves_out_its_point_is_drawn():
    # A percentile bootstrap interval need not hold the fitted rating (a skewed bootstrap; or, with every
    # battle the same outcome, an interval of width 0 a rounding away from it): matplotlib refuses a
    # negative error bar, which was a 500 on the page.
    svg = charts.interval_chart(
        ["a", "b"],
        {"plain": [(1389.168836421104, 1389.1688364211036, 1389.1688364211036), (1000, 1010, 1050)]},
        title="Ratings",
        x_label="rating",
    )
    assert svg.startswith("<svg")


def test_the_page_of_a_model_that_won_every_battle(superuser_client, make_project):
    project = make_project("sweep", judgments_per_pair=1)
    services.pairs_import(
        project=project,
        items=[
            {"external_id": f"s{i}", "prompt": f"P{i}", "response_a": f"A{i}", "response_b": f"B{i}",
             "model_a": "GPT", "model_b": "gpt "}
            for i in range(2)
        ],
    )  # fmt: skip
    services.judgments_import(
        project=project,
        items=[{"pair": f"s{i}", "rater": "ann", "choice": "a"} for i in range(2)],
    )
    response = superuser_client.get(url(project))
    assert response.status_code == 200 and ">GPT</th>" in response.content.decode()
