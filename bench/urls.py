"""The app's URLconf plus a bare Django view: the REST benchmark's baseline (bench.settings)."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from config.urls import handler400, handler500
from config.urls import urlpatterns as app_urlpatterns


def bare(request: HttpRequest) -> JsonResponse:
    """The least a Django view does behind the app's middleware: a plain sync JSON answer."""
    return JsonResponse({"ok": True})


def signed_in(request: HttpRequest) -> JsonResponse:
    """The bare view with the signed-in user read (Django's session and user, no DRF): what
    every API endpoint pays before its own work, less DRF's request handling."""
    return JsonResponse({"id": request.user.pk})


urlpatterns = [path("bench/bare/", bare), path("bench/user/", signed_in), *app_urlpatterns]

__all__ = ["handler400", "handler500", "urlpatterns"]
