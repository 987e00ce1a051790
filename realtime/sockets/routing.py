"""WebSocket URL routes."""

from django.urls import re_path

from .gateway import GatewayConsumer
from .tutorial import TutorialChatConsumer

websocket_urlpatterns = [
    re_path(r"^ws/$", GatewayConsumer.as_asgi()),
    # The tutorial's route admitted `\w+`; any name reaches the consumer, which validates it.
    re_path(r"^ws/chat/(?P<room_name>[^/]+)/$", TutorialChatConsumer.as_asgi()),
]
