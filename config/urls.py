"""Top-level URLs: the lab, the admin, the health check and metrics, the versioned API and its
schema, and the favicon browsers ask for at the root."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config.admin_site import use_tradelab_admin_site
from config.health import health
from config.metrics import metrics

# A request that failed on an unreachable database is a 503, not a 500 (config/health.py).
handler500 = "config.health.server_error"
# A URL under /api/ that no route matches is a JSON 404, like every error of the API.
handler404 = "config.api.errors.not_found"


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Browsers ask for /favicon.ico whatever a page links: send them to the static SVG."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))


# The internal tables in a section of their own and the dashboard on the index (its titles
# too): config/admin_site.py.
use_tradelab_admin_site(admin.site)

urlpatterns = [
    path("", RedirectView.as_view(url="/lab/", permanent=False)),
    path("favicon.ico", favicon, name="favicon"),
    path("lab/", include("backtests.lab")),
    path("lab/", include("backtests.lab_research")),  # comparisons and analyses
    path("lab/", include("studies.lab")),  # studies: list, form, page
    path("lab/", include("portfolios.lab")),  # portfolio backtests: list and form, page
    path("accounts/", include("accounts.web_urls")),  # Django's auth views, sign-up
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", include("config.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file of its own: no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
]
