"""Top-level URL routes. The example SPA at `/` is served by WhiteNoise (see settings)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/", include("api.urls")),
    path("admin/", admin.site.urls),
    path("chat/", include("chat.urls")),
]
