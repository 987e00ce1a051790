"""ASGI entry point: HTTP to Django; WebSockets through Origin and auth checks to the sockets."""

import atexit
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django must be set up before anything imports models.
django.setup(set_prefix=False)

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from config import django_internals, topology  # noqa: E402
from realtime.kernel import heap, metrics  # noqa: E402
from realtime.sockets.middleware import websocket_security_stack  # noqa: E402
from realtime.sockets.routing import websocket_route  # noqa: E402

django_internals.check()
topology.check_or_exit("ASGI server")

application = ProtocolTypeRouter(
    {
        "http": django_internals.PooledASGIHandler(settings.SWITCHBOARD_HTTP_THREADS),
        "websocket": websocket_security_stack(websocket_route),
    }
)

heap.freeze_loaded()
atexit.register(metrics.process_ended)  # its live gauges (sockets open) stop counting
