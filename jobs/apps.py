from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        from . import (
            errors,  # noqa: F401 - its codes join both transports' error enums
            kinds,  # noqa: F401 - registers the shipped job kinds
            kombu_internals,
            signals,
        )

        # Kinds of the project's own apps, in their `job_kinds` modules.
        autodiscover_modules("job_kinds")
        signals.connect_worker_signals()
        kombu_internals.check()  # kombu still has what the fix below relies on
        kombu_internals.install_redis_reconnect_fix()
