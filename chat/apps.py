from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        from . import errors  # noqa: F401 - its codes join both transports' error enums
