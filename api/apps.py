from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"

    def ready(self) -> None:
        from . import drf_internals, spectacular_internals

        # Each raises, naming the package and version, if a private part it relies on is gone.
        drf_internals.check()
        spectacular_internals.check()
