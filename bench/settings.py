"""Settings of the REST benchmark's servers: the local profile with the benchmark's URLconf."""

from config.settings.local import *  # noqa: F403

# The app's routes plus `bench/bare/`, a bare Django view measured in the same process.
ROOT_URLCONF = "bench.urls"

# The benchmark's own job kinds (bench/job_kinds.py), as a project adds its own.
INSTALLED_APPS = [*INSTALLED_APPS, "bench"]  # noqa: F405
