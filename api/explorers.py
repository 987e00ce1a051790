"""`/api/docs/` (Swagger UI) and `/api/redoc/`: served from this server, usable offline.

Their assets come from drf-spectacular-sidecar. Redoc's page template asks Google for fonts and
its menu shows a logo from Redocly's CDN; the template here uses the browser's fonts, and a
Content-Security-Policy keeps the browser from fetching images, fonts or data anywhere but
here, so the explorers never reach out (nor leak that someone reads the docs).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.response import Response

OFFLINE_POLICY = "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'"


class SwaggerView(SpectacularSwaggerView):
    """Swagger UI; "Try it out" calls this server only."""

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = OFFLINE_POLICY
        return response


class RedocView(SpectacularRedocView):
    """Redoc, without its web fonts and CDN logo."""

    template_name = "api/redoc.html"

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = OFFLINE_POLICY
        return response
