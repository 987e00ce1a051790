from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        from . import (
            errors,  # noqa: F401 - its codes join both transports' error enums
            kinds,  # noqa: F401 - registers the shipped job kinds
        )
        from .broker import redis_transport_patch

        redis_transport_patch()
