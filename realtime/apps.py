from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"

    def ready(self) -> None:
        from .sockets import accounts  # noqa: F401  (connects the sign-out and token signals)
