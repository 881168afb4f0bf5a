"""URL routes: the rater's pages, the REST API under /api/v1/, its schema, the admin and the health check.

The error handlers answer JSON under /api/ and Django's own pages elsewhere (config.errors).
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.pages.forms import AdminLoginForm
from annotation.pages.security import csp_override
from config.health import healthz

handler400 = "config.errors.bad_request"
handler403 = "config.errors.permission_denied"
handler404 = "config.errors.page_not_found"
handler500 = "config.errors.server_error"


class JsonErrorsMixin(APIView):
    """Errors (an anonymous caller's 401) in the API's JSON shape, like everything under /api/, not in the
    format the view answers when it succeeds (YAML for the schema, HTML for the docs)."""

    def handle_exception(self, exc: Exception) -> Response:
        renderer = JSONRenderer()
        self.request.accepted_renderer = renderer
        self.request.accepted_media_type = renderer.media_type
        return super().handle_exception(exc)


class SchemaView(JsonErrorsMixin, SpectacularAPIView):
    pass


class DocsView(JsonErrorsMixin, SpectacularSwaggerSplitView):
    pass


# The admin's login says so when a login was refused for too many failures, as the site's does.
admin.site.login_form = AdminLoginForm
# The admin says whose it is, in its header and every page title, not "Django administration".
admin.site.site_header = "Pairwise administration"
admin.site.site_title = "Pairwise"
admin.site.index_title = "Projects, raters, pairs, judgments and training runs"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("annotation.api.urls")),
    path("api/v1/", include("reward_models.api.urls")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    # The split view loads its start-up script from a URL instead of inline, so the page runs under the
    # site's Content-Security-Policy; only its one inline <style> block needs an exception.
    path(
        "api/docs/",
        csp_override(style_src="'self' 'unsafe-inline'")(DocsView.as_view(url_name="schema")),
        name="api-docs",
    ),
    path("", include("annotation.pages.urls")),
]
