"""Routes of the rater's pages: the project list at /, login and logout, the rating page, and the rater's
own judgments with the correction of one."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import URLPattern, path

import web.ids  # noqa: F401 (registers the `id` path converter)

from . import views
from .forms import LoginForm

urlpatterns: list[URLPattern] = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="registration/login.html",
            next_page="home",
            redirect_authenticated_user=True,
            authentication_form=LoginForm,
        ),
        name="login",
    ),
    # Django's LogoutView takes POST only: a link or an image elsewhere cannot log a rater out.
    path("logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("projects/<slug:slug>/rate/", views.rate, name="rate"),
    path("projects/<slug:slug>/my-judgments/", views.my_judgments, name="my-judgments"),
    path("projects/<slug:slug>/my-judgments/<id:judgment_id>/", views.correct, name="judgment-correct"),
    path("projects/<slug:slug>/rate/pair/<id:assignment_id>/", views.rate_pair, name="rate-pair"),
]
