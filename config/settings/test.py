"""Test profile: real Redis (REDIS_URL, else a private one), a shared test database file."""

import os
import tempfile
import uuid
from pathlib import Path

from config.redis_server import PrivateRedis

# Decide Redis before the base settings read REDIS_URL; child processes (worker, ASGI
# server) inherit the variables set here, so they share this run's Redis and queue.
if not os.environ.get("REDIS_URL"):
    _redis = PrivateRedis(Path(tempfile.mkdtemp(prefix="switchboard-redis-"))).start()
    os.environ["REDIS_URL"] = _redis.url
    os.environ.setdefault("SWITCHBOARD_PRIVATE_REDIS", "1")
# `TEST_BROKER=rabbitmq` runs the suite with RabbitMQ as the Celery broker (Redis stays the
# channel layer and cache).
if os.environ.get("TEST_BROKER") == "rabbitmq":
    os.environ.setdefault(
        "CELERY_BROKER_URL",
        os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    )
# `TEST_CHANNEL_LAYER=rabbitmq` runs the socket tests with RabbitMQ as the channel layer
# (Redis stays the cache and presence store, and the broker unless TEST_BROKER says otherwise).
if os.environ.get("TEST_CHANNEL_LAYER"):
    os.environ.setdefault("CHANNEL_LAYER", os.environ["TEST_CHANNEL_LAYER"])
    if os.environ["CHANNEL_LAYER"] == "rabbitmq":
        os.environ.setdefault(
            "CHANNEL_LAYER_URL",
            os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        )
_run_id = os.environ.setdefault("SWITCHBOARD_TEST_RUN", uuid.uuid4().hex[:8])
os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"switchboard-test-{_run_id}")
os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"switchboard-test-{_run_id}")

from .base import *  # noqa: E402, F403
from .base import CACHES, DATABASES, SQLITE, VAR_DIR, env  # noqa: E402

DEBUG = False
# A project's own app with job kinds of its own, declared as the README's guide shows.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.jobkinds"]  # noqa: F405
SECRET_KEY = "test-only-secret-key-not-for-any-deployment"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SWITCHBOARD_ANONYMOUS_POSTING = env.bool("SWITCHBOARD_ANONYMOUS_POSTING", default=True)
# Every test socket comes from 127.0.0.1; the per-address cap has its own test.
SWITCHBOARD_WS_MAX_PER_ADDRESS = env.int("SWITCHBOARD_WS_MAX_PER_ADDRESS", default=0)
# Many tests (and the contract fuzzing) write a lot as one user; the limits' own tests set
# them low.
JOBS_ENQUEUE_RATE = env.str("JOBS_ENQUEUE_RATE", default="100000/min")
CHAT_POST_RATE = env.str("CHAT_POST_RATE", default="100000/min")
JOBS_MAX_ACTIVE_PER_USER = env.int("JOBS_MAX_ACTIVE_PER_USER", default=0)
# This run's cache keys (rate limit counters) apart from any other run's on the same Redis.
CACHES["default"]["KEY_PREFIX"] = f"switchboard-test-{_run_id}"

if SQLITE:
    # A file, not SQLite's in-memory default, so the worker and server processes that the
    # fixtures start can open the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{_run_id}.sqlite3")}
