from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"

    def ready(self) -> None:
        from .kernel import asgiref_internals
        from .sockets import (
            accounts,  # noqa: F401  (connects the sign-out and token signals)
            asyncio_internals,
            channels_internals,
        )

        # Each raises, naming the package and version, if a private part it relies on is gone.
        asgiref_internals.check()
        asyncio_internals.check()
        channels_internals.check()
