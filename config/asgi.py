"""ASGI entry point: HTTP to Django; WebSockets through Origin and auth checks to the sockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.sockets.middleware import websocket_security_stack  # noqa: E402
from realtime.sockets.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_security_stack(URLRouter(websocket_urlpatterns)),
    }
)
