"""One machine, safe defaults: debug on, loopback hosts only, anonymous posting allowed."""

import os
import sys
from pathlib import Path

from config.redis_server import local_url

# Decide Redis before the base settings read REDIS_URL: unset, it is the one `make run`
# started, so a second terminal reaches the running stack. Child processes inherit it.
_var_dir = Path(os.environ.get("SWITCHBOARD_VAR_DIR") or Path(__file__).parents[2] / "var")
os.environ["REDIS_URL"], _which = local_url(os.environ, _var_dir)
if _which:
    print(_which, file=sys.stderr)

from .base import *  # noqa: E402, F403
from .base import env  # noqa: E402

DEBUG = env.bool("DEBUG", default=True)
# Used only by this profile; production refuses to start without its own.
SECRET_KEY = env.str(
    "SECRET_KEY", default="django-insecure-local-only-4q1v9w0d2m8z7x6c5b4n3m2l1k0j"
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
SWITCHBOARD_ANONYMOUS_POSTING = env.bool("SWITCHBOARD_ANONYMOUS_POSTING", default=True)
WHITENOISE_AUTOREFRESH = DEBUG
