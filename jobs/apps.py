from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        from . import (
            errors,  # noqa: F401 - its codes join both transports' error enums
            kinds,  # noqa: F401 - registers the shipped job kinds
            kombu_internals,
        )

        kombu_internals.check()  # kombu still has what the fix below relies on
        kombu_internals.install_redis_reconnect_fix()
