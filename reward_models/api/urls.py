"""Routes of the training-run, scoring and review-queue endpoints, under /api/v1/ (API.md)."""

from __future__ import annotations

from django.urls import URLPattern, path

import web.ids  # noqa: F401 (registers the `id` path converter)

from . import views

urlpatterns: list[URLPattern] = [
    path("training-runs/", views.TrainingRunsView.as_view(), name="api-training-runs"),
    path("training-runs/<id:run_id>/", views.TrainingRunView.as_view(), name="api-training-run"),
    path(
        "training-runs/<id:run_id>/cancel/",
        views.TrainingRunCancelView.as_view(),
        name="api-training-run-cancel",
    ),
    path(
        "training-runs/<id:run_id>/activate/",
        views.TrainingRunActivateView.as_view(),
        name="api-training-run-activate",
    ),
    path("score/", views.ScoreView.as_view(), name="api-score"),
    path("projects/<slug:slug>/review/", views.ReviewQueueView.as_view(), name="api-project-review"),
    path(
        "projects/<slug:slug>/review/scoring/",
        views.ReviewScoringView.as_view(),
        name="api-project-review-scoring",
    ),
    path(
        "projects/<slug:slug>/review/<id:pair_id>/",
        views.ReviewActionView.as_view(),
        name="api-project-review-action",
    ),
]
