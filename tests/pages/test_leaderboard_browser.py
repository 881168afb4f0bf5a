"""The leaderboard page in Chromium: its charts decode under the site's Content-Security-Policy, hostile
model names stay text, and its form anchors the board at the chosen model."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.annotation.test_leaderboard_api import import_battles

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="pwned(1)">'


@pytest.fixture
def superuser(admin_user):
    admin_user.is_superuser = True
    admin_user.save()
    return admin_user


def test_the_leaderboard_page_draws_and_anchors_where_asked(tab, superuser, make_project):
    project = make_project("arena")
    import_battles(project, models={HOSTILE: 1.0, "beta": 0.0, "gamma": -1.0})
    t = tab()
    t.login_as(superuser)
    t.goto(reverse("admin:annotation_project_leaderboard", args=[project.pk]))
    t.page.wait_for_function(
        "() => Array.from(document.querySelectorAll('img.chart'))"
        ".filter(function (img) { return img.complete && img.naturalWidth > 0; }).length === 3"
    )
    assert HOSTILE in t.page.inner_text("table.figures")
    t.page.select_option("select[name=reference]", "gamma")
    t.page.check("input[name=exclude_flagged]")
    t.page.click("form.options button[type=submit]")
    t.page.wait_for_url("**reference=gamma**")
    row = t.page.locator("table.figures tbody tr", has_text="gamma")
    assert row.locator("td").nth(1).inner_text() == "1000"
    assert t.page.is_checked("input[name=exclude_flagged]")
    t.screenshot("leaderboard")
    t.assert_clean()
