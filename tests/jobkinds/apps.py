from django.apps import AppConfig


class JobKindsConfig(AppConfig):
    """A project's own app with job kinds of its own (test settings install it)."""

    name = "tests.jobkinds"
    label = "test_jobkinds"
