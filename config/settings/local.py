"""One machine, safe defaults: debug on, loopback hosts only, anonymous posting allowed."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
# Used only by this profile; production refuses to start without its own.
SECRET_KEY = env.str(
    "SECRET_KEY", default="django-insecure-local-only-4q1v9w0d2m8z7x6c5b4n3m2l1k0j"
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
SWITCHBOARD_ANONYMOUS_POSTING = env.bool("SWITCHBOARD_ANONYMOUS_POSTING", default=True)
WHITENOISE_AUTOREFRESH = DEBUG
