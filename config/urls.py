"""Top-level URL routes. The example SPA at `/` is served by WhiteNoise (see settings)."""

from django.contrib import admin
from django.urls import include, path

from api.metrics import metrics_view

urlpatterns = [
    path("api/", include("api.urls")),
    path("admin/", admin.site.urls),
    path("chat/", include("chat.urls")),
    # For Prometheus; not part of the API (no schema), and not public (api/metrics.py).
    path("metrics", metrics_view, name="metrics"),
]

# Errors Django answers itself (a foreign Host header, a failure outside DRF) in the API's
# error shape: no HTML page, no traceback.
handler400 = "api.errors.bad_request"
handler500 = "api.errors.server_error"
