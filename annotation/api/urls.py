"""Routes of the REST API under /api/v1/ (see API.md)."""

from __future__ import annotations

from django.urls import URLPattern, path

import web.ids  # noqa: F401 (registers the `id` path converter)

from . import views

urlpatterns: list[URLPattern] = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("raters/", views.RaterCreateView.as_view(), name="api-raters"),
    path("projects/", views.ProjectListView.as_view(), name="api-projects"),
    path("projects/<slug:slug>/", views.ProjectDetailView.as_view(), name="api-project"),
    path("projects/<slug:slug>/raters/", views.ProjectRatersView.as_view(), name="api-project-raters"),
    path(
        "projects/<slug:slug>/raters/<str:username>/",
        views.ProjectRaterView.as_view(),
        name="api-project-rater",
    ),
    path("projects/<slug:slug>/pairs/", views.PairsView.as_view(), name="api-project-pairs"),
    path("projects/<slug:slug>/next/", views.NextView.as_view(), name="api-project-next"),
    path(
        "projects/<slug:slug>/judgments/import/",
        views.JudgmentsImportView.as_view(),
        name="api-project-judgments-import",
    ),
    path("projects/<slug:slug>/judgments/", views.JudgmentsListView.as_view(), name="api-project-judgments"),
    *(
        path(
            f"projects/<slug:slug>/export/judgments.{extension}",
            views.JudgmentsExportView.as_view(),
            {"extension": extension},
            name=f"api-project-export-judgments-{extension}",
        )
        for extension in ("jsonl", "csv")
    ),
    path(
        "projects/<slug:slug>/export/preferences.jsonl",
        views.PreferencesExportView.as_view(),
        name="api-project-export-preferences",
    ),
    path(
        "projects/<slug:slug>/my-judgments/", views.MyJudgmentsView.as_view(), name="api-project-my-judgments"
    ),
    path("projects/<slug:slug>/agreement/", views.AgreementView.as_view(), name="api-project-agreement"),
    path(
        "projects/<slug:slug>/leaderboard/", views.LeaderboardView.as_view(), name="api-project-leaderboard"
    ),
    *(
        path(
            f"projects/<slug:slug>/export/leaderboard.{extension}",
            views.LeaderboardExportView.as_view(),
            {"extension": extension},
            name=f"api-project-export-leaderboard-{extension}",
        )
        for extension in ("csv", "json")
    ),
    path("assignments/<id:assignment_id>/judgment/", views.JudgmentView.as_view(), name="api-judgment"),
    path("assignments/<id:assignment_id>/skip/", views.SkipView.as_view(), name="api-skip"),
    path(
        "judgments/<id:judgment_id>/correction/",
        views.JudgmentCorrectionView.as_view(),
        name="api-judgment-correction",
    ),
]
