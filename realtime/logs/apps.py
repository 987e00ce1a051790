from django.apps import AppConfig


class LogsConfig(AppConfig):
    name = "realtime.logs"
    label = "logs"

    def ready(self) -> None:
        from .selectors import log_files

        log_files()  # a malformed SWITCHBOARD_TAIL_FILES stops the process at start-up
