from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        from . import kinds  # noqa: F401 - registers the shipped job kinds
        from .broker import redis_transport_patch

        redis_transport_patch()
