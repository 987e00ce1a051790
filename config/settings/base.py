"""Settings shared by every profile, read once from the environment."""

from pathlib import Path

import corsheaders.defaults
import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

# Runtime files (SQLite database, private Redis, exports); git ignores it.
VAR_DIR = Path(env.str("SWITCHBOARD_VAR_DIR", default=str(BASE_DIR / "var")))

# ------------------------------------------------------------------ core
DEBUG = env.bool("DEBUG", default=False)
# SECRET_KEY is set by each profile: production has no default for it.
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "chat",
    "jobs",
    "realtime",
    "realtime.logs",
    "api",
]

MIDDLEWARE = [
    "api.metrics.RequestMetricsMiddleware",
    "api.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
MEDIA_ROOT = VAR_DIR / "media"
# WhiteNoise serves static files (the explorers' assets from drf-spectacular-sidecar) and,
# at `/`, the example SPA; any static host can serve `frontend-example/` instead. Straight
# from the apps by default (no collectstatic step); production serves collected files.
WHITENOISE_USE_FINDERS = True
FRONTEND_DIR = BASE_DIR / "frontend-example"
WHITENOISE_ROOT = FRONTEND_DIR
WHITENOISE_INDEX_FILE = True

# ------------------------------------------------------------------ database
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if SQLITE:
    # Django's backend, but the WAL is checkpointed by a thread of each process rather than
    # inside whichever commit fills it (config/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "config.sqlite"
    # The ASGI server and the Celery worker write to one file: WAL lets readers run beside
    # the writer, IMMEDIATE takes the write lock at BEGIN (no lock upgrade deadlocks) and
    # the timeout makes a writer wait for the lock instead of failing "database is locked".
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    # libpq waits forever for an unreachable server by default; a request should get its
    # 503 `database_unavailable` within seconds instead.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    )
# Django closes a connection after every request and every `database_sync_to_async` call
# unless CONN_MAX_AGE keeps it. On SQLite that close is dear: the last connection to close
# checkpoints the WAL into the database file, so each posted message paid for a checkpoint
# and a reopen. A kept SQLite connection is just an open file.
DATABASES["default"]["CONN_MAX_AGE"] = env.int(
    "DATABASE_CONN_MAX_AGE", default=600 if SQLITE else 0
)
# On PostgreSQL connections come from a pool (psycopg_pool) of at most this many per process:
# under ASGI a request or a socket call may run on any of several threads, and Django closes a
# thread's connection after each, so without a pool every one of them connected anew (a few ms
# of CPU on each side). 0 turns it off; so does DATABASE_CONN_MAX_AGE (Django keeps one or
# the other).
_pool_size = env.int("DATABASE_POOL_MAX_SIZE", default=16)
_postgres = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")
if _postgres and _pool_size and not DATABASES["default"]["CONN_MAX_AGE"]:
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": 1,
        "max_size": _pool_size,
        "timeout": env.int("DATABASE_CONNECT_TIMEOUT", default=5),
        # The pool retries a lost connection with growing delays; giving up after a few
        # seconds lets the next request try at once, so service resumes soon after an outage.
        "reconnect_timeout": env.int("DATABASE_CONNECT_TIMEOUT", default=5),
    }
# The pool checks a connection before handing it out, so one PostgreSQL dropped is replaced.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# ------------------------------------------------------------------ HTTP
# Threads of each server process that run HTTP requests (config/django_internals.py): one
# request at a time each, start to end, keeping its database connection between requests;
# more requests wait for one. Python runs one thread at a time, so more threads overlap only
# waits (database, Redis, broker), and more SQLite writers than that poll for its lock: with
# 16 or 32 threads and 16 clients posting, one post in a hundred took over a second; with 8,
# 0.3 s.
SWITCHBOARD_HTTP_THREADS = env.int("SWITCHBOARD_HTTP_THREADS", default=8)
# How many ASGI processes and machines run this stack together (config/topology.py checks
# that what they must share is shared; `make prod` sets the first).
SWITCHBOARD_WEB_PROCESSES = env.int("SWITCHBOARD_WEB_PROCESSES", default=1)
SWITCHBOARD_HOSTS = env.int("SWITCHBOARD_HOSTS", default=1)

# ------------------------------------------------------------------ redis, channels, cache
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Prefix of every Redis key the app writes itself (presence) and of the channel layer's.
REDIS_KEY_PREFIX = env.str("CHANNEL_LAYER_PREFIX", default="switchboard")

# The Celery broker (see "celery" below), read here: the RabbitMQ channel layer defaults to it.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
# The RabbitMQ channel layer's server: CHANNEL_LAYER_URL, else the broker when that is
# RabbitMQ, else the local default (kombu's `amqp://…//` form is accepted as it is).
CHANNEL_LAYER_URL = env.str(
    "CHANNEL_LAYER_URL",
    default=CELERY_BROKER_URL
    if CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://"))
    else "amqp://guest:guest@127.0.0.1:5672/",
)

# The Redis layers' servers: several shard the groups over them (channels-redis hashes each
# group's name to one); presence, socket accounting and the cache stay on REDIS_URL.
CHANNEL_LAYER_HOSTS = env.list("CHANNEL_LAYER_HOSTS", default=[REDIS_URL])

CHANNEL_LAYER_BACKENDS = {
    # Redis pub/sub: an event is pushed to each subscribed process, one PUBLISH per send.
    "pubsub": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": CHANNEL_LAYER_HOSTS, "prefix": REDIS_KEY_PREFIX},
    },
    # Redis lists: each receive polls (BZPOPMIN) behind a lock, a few round trips per event.
    "core": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": CHANNEL_LAYER_HOSTS,
            "prefix": REDIS_KEY_PREFIX,
            # Each server process has one layer channel (its hub) for all its rooms.
            "capacity": 10_000,
        },
    },
    # RabbitMQ (channels-rabbitmq): each process has one exclusive queue, bound to the groups
    # its hub follows; every publish is confirmed by RabbitMQ. Redis stays the cache and
    # presence store (realtime/kernel/rabbitmq_layer.py).
    "rabbitmq": {
        "BACKEND": "realtime.kernel.rabbitmq_layer.RabbitMQChannelLayer",
        "CONFIG": {
            "host": CHANNEL_LAYER_URL,
            # Groups are routing keys of this exchange: runs with another prefix on the same
            # RabbitMQ never hear each other's rooms.
            "groups_exchange": f"{REDIS_KEY_PREFIX}.groups",
            # Messages a process's queue may hold; past that RabbitMQ refuses the publish and
            # the send is dropped with a warning (at-most-once). The default, 100, is one
            # burst: a queue fills while the event loop fans a big message out to thousands
            # of sockets. The hub is the queue's only reader (one per process, as with the
            # Redis lists layer's capacity above), so the bound is per process; a message is
            # one event, or a batch of up to 100 events of one group (the publisher's).
            "remote_capacity": 10_000,
            # Messages taken from the queue ahead of the hub (RabbitMQ's prefetch, and the
            # layer's local buffer): 100 stalls delivery on a round trip of acks whenever the
            # hub is busy for a moment; 1,000 keeps the socket full at a bounded memory cost.
            "local_capacity": 1_000,
            # A message older than this (s) is dropped in RabbitMQ: by then the hub's feeds
            # have caught up from the database anyway.
            "expiry": 60,
            # How long (s) a process waits for its first connection to RabbitMQ; after that, a
            # subscribe or a publish without one fails at once (`unavailable`, or a lost event).
            "connect_wait": 5.0,
        },
    },
}
CHANNEL_LAYER = env.str("CHANNEL_LAYER", default="pubsub")
CHANNEL_LAYERS = {
    "default": CHANNEL_LAYER_BACKENDS[CHANNEL_LAYER],
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "switchboard",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    },
}

# ------------------------------------------------------------------ celery
# CELERY_BROKER_URL is read above, with the channel layers.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
# The Job row is the source of truth: no result backend, no results kept in Redis.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A task is acknowledged when it ends, so a worker killed mid-task gives it back.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="switchboard")
# Publishing must fail fast when the broker is down, so a request can answer 503.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# However many beats run, one sends (config/beat.py): the others wait on standby and take over
# within BEAT_LOCK_SECONDS of its end.
CELERY_BEAT_SCHEDULER = "config.beat:SingleBeatScheduler"
BEAT_LOCK_SECONDS = env.float("BEAT_LOCK_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE = {
    "clear-expired-sessions": {"task": "auth.sessions_clear_expired", "schedule": 60 * 60 * 6},
    "clear-expired-budgets": {"task": "chat.budgets_clear_expired", "schedule": 60 * 60},
    "reap-expired-jobs": {"task": "jobs.reap_expired", "schedule": 30},
    "dispatch-due-jobs": {"task": "jobs.dispatch_due", "schedule": 30},
    # A waiting job's place in the queue; `expires` drops a round that waited past the next.
    "queue-positions": {"task": "jobs.queue_positions", "schedule": 1.0, "options": {"expires": 5}},
}
# How long (s) the Redis broker waits for an unacknowledged message before redelivering it;
# a job's claim makes a redelivery harmless.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    # Sweep for expired unacknowledged messages every this many seconds (one cheap scan).
    "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
    "unacked_restore_throttle": 1,
    # Redis broker: a server that accepts connections but does not answer (hung, or cut off
    # mid-connection) must not hold a request that publishes: without these it waits forever.
    "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
    "socket_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=3),
}

# ------------------------------------------------------------------ jobs
# Longest countdown (seconds) a client may ask for.
JOBS_MAX_COUNTDOWN = env.int("JOBS_MAX_COUNTDOWN", default=24 * 60 * 60)
# Jobs due further ahead than this wait in the database and are sent by beat's dispatcher
# (every 30 s) when they come within it; must exceed that period, and stay well under the
# broker's limits (Redis visibility timeout, RabbitMQ consumer_timeout: 30 min by default).
JOBS_BROKER_MAX_DELAY = env.int("JOBS_BROKER_MAX_DELAY", default=300)
# A waiting job that was sent but has not started this many seconds after it was due is sent
# again by the dispatcher (its message was lost with a broker restarted empty, or is held by a
# killed worker until the visibility timeout); the claim makes the second message harmless.
JOBS_REDISPATCH_AFTER = env.int("JOBS_REDISPATCH_AFTER", default=60)
# The worker renews a running job's lease while its process runs (and each progress write
# does); a job whose lease ran out (its worker was killed) is retried or failed by the reaper.
JOBS_LEASE_SECONDS = env.int("JOBS_LEASE_SECONDS", default=120)
# At most one progress write and event per job per this many seconds.
JOBS_PROGRESS_INTERVAL = env.float("JOBS_PROGRESS_INTERVAL", default=0.25)
# Each attempt runs in a process of its own, which the worker stops when it must. Seconds an
# attempt may run: past the soft limit `TimeLimitExceeded` is raised in it (0: none); past
# the hard limit its process is stopped and the attempt failed. A kind may set its own.
JOBS_SOFT_TIME_LIMIT = env.float("JOBS_SOFT_TIME_LIMIT", default=0)
JOBS_TIME_LIMIT = env.float("JOBS_TIME_LIMIT", default=60 * 60)
# Seconds a cancelled running job (`cancelling`) has to stop at a reporter call before its
# process is stopped: first asked (SIGUSR1: `JobCancelled` is raised wherever its code is),
# then, JOBS_KILL_AFTER seconds later, killed.
JOBS_CANCEL_GRACE = env.float("JOBS_CANCEL_GRACE", default=5)
JOBS_KILL_AFTER = env.float("JOBS_KILL_AFTER", default=2)
# A job's output stream (`reporter.output`): written and sent at most every
# JOBS_OUTPUT_INTERVAL seconds, several chunks at once; a chunk longer than
# JOBS_OUTPUT_CHUNK_MAX characters is cut in pieces; the newest JOBS_OUTPUT_KEEP chunks of a
# job are kept; a job writing more than JOBS_OUTPUT_RATE characters a second is slowed down.
JOBS_OUTPUT_INTERVAL = env.float("JOBS_OUTPUT_INTERVAL", default=0.02)
JOBS_OUTPUT_CHUNK_MAX = env.int("JOBS_OUTPUT_CHUNK_MAX", default=4000)
JOBS_OUTPUT_KEEP = env.int("JOBS_OUTPUT_KEEP", default=5000)
JOBS_OUTPUT_RATE = env.int("JOBS_OUTPUT_RATE", default=1_000_000)
# Unfinished (scheduled, queued, retrying, running) jobs one user may have; enqueue refuses more
# with 429, counted under a lock on the user's row so simultaneous requests cannot pass it (0 =
# no cap).
JOBS_MAX_ACTIVE_PER_USER = env.int("JOBS_MAX_ACTIVE_PER_USER", default=20)

# ------------------------------------------------------------------ REST
# Django's database sessions and model backend, each read with SQL written once (a signed-in
# request reads both). Django's own backend stays listed for sessions it signed in.
SESSION_ENGINE = "api.sessions"
AUTHENTICATION_BACKENDS = [
    "api.authentication.ModelBackend",
    "django.contrib.auth.backends.ModelBackend",
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated call then gets 401 with `WWW-Authenticate: Token`.
        "api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    # DRF's JSON, written by orjson (api/renderers.py).
    "DEFAULT_RENDERER_CLASSES": ["api.renderers.JSONRenderer"],
    # JSON only (anything else is 415), and no body over DATA_UPLOAD_MAX_MEMORY_SIZE (413).
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "api.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {"login": env.str("LOGIN_THROTTLE_RATE", default="30/min")},
    # Proxies in front that append to X-Forwarded-For: 0 takes the peer's address, so a
    # client cannot pick its own address (and its own anonymous rate limit) with that header.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
# Rate limits of enqueues and posts ("N/s", "N/min", "N/hour", "N/day"), per user or,
# anonymous, per client address, whatever the transport (REST or either socket route);
# counted by the domains: enqueues atomically in Redis (realtime/kernel/ratelimit.py), posts
# in the posting transaction itself (chat/store.py).
JOBS_ENQUEUE_RATE = env.str("JOBS_ENQUEUE_RATE", default="30/min")
CHAT_POST_RATE = env.str("CHAT_POST_RATE", default="60/min")
# Typing indicators: at most one "typing" per socket and room is forwarded each this many
# seconds (the rest are dropped); each tells its receivers to show it for twice as long.
CHAT_TYPING_INTERVAL = env.float("CHAT_TYPING_INTERVAL", default=3.0)
# Read state: a member's read position in a room is stored at most once this many seconds
# (the latest value a moment after); `rooms:mine` tells a socket of a room's state as often.
CHAT_READ_WINDOW = env.float("CHAT_READ_WINDOW", default=1.0)
# "Seen by" (`/api/rooms/{slug}/readers/`) answers for rooms of up to this many members.
CHAT_SEEN_BY_MAX_MEMBERS = env.int("CHAT_SEEN_BY_MAX_MEMBERS", default=50)
# Request bodies above this many bytes are refused with 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=256 * 1024)

SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "DESCRIPTION": (
        "REST interface of Switchboard: chat rooms, background jobs, server logs, auth and "
        "health.\n\n"
        "**Auth.** Scripts: `POST /api/auth/token/` with a username and password, then send "
        "`Authorization: Token <key>` (in this explorer: *Authorize*, `tokenAuth`, paste "
        "`Token <key>`). Browsers on this site: `POST /api/auth/login/` sets the session "
        "cookie; writes then need the `X-CSRFToken` header (`GET /api/auth/csrf/`).\n\n"
        "**Errors** have one shape, `{code, detail, fields?}`; each response lists its codes.\n\n"
        "**Live updates** come over the WebSocket `/ws/`, described by the AsyncAPI document "
        "[/api/schema/asyncapi/](/api/schema/asyncapi/) (committed as `openapi/asyncapi.yaml`)."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "TAGS": [
        {"name": "auth", "description": "Sign in (session or token), who am I, sign out"},
        {"name": "rooms", "description": "Chat rooms and their messages, by `seq`"},
        {"name": "jobs", "description": "Background jobs: enqueue with a countdown, poll, cancel"},
        {"name": "logs", "description": "Server log files that staff may follow live"},
        {"name": "health", "description": "Liveness and readiness of the whole stack"},
    ],
    # No validator badge: it would send the schema to a public service.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None, "displayOperationId": True},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ReadinessStatusEnum": ["ok", "unavailable"],
        # A room's `kind` is told apart from each job kind's (`Enqueue<Kind>KindEnum`) by name.
        "RoomKindEnum": "chat.models.RoomKind",
        "NewRoomKindEnum": ["public", "private"],
    },
}

# ------------------------------------------------------------------ browsers and sockets
CORS_ALLOWED_ORIGINS: list[str] = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_CREDENTIALS = True
# A cross-origin SPA may send Idempotency-Key with its enqueues.
CORS_ALLOW_HEADERS = (*corsheaders.defaults.default_headers, "idempotency-key")
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=CORS_ALLOWED_ORIGINS)

# Per-socket limit on client frames: average per second, and burst.
SWITCHBOARD_WS_RATE = env.float("SWITCHBOARD_WS_RATE", default=20.0)
SWITCHBOARD_WS_BURST = env.float("SWITCHBOARD_WS_BURST", default=40.0)
# Characters of frames a socket may have waiting while its client is not reading (the
# server's own write buffer aside); past this it is closed (4408) and can resume by `seq`.
SWITCHBOARD_WS_BACKLOG = env.int("SWITCHBOARD_WS_BACKLOG", default=4 * 1024 * 1024)
# Open sockets per signed-in user, and per client address for anonymous sockets (across
# all server processes; 0 = no cap). Behind a proxy, let the server see client addresses
# (uvicorn --proxy-headers) or every anonymous socket shares the proxy's.
SWITCHBOARD_WS_MAX_PER_USER = env.int("SWITCHBOARD_WS_MAX_PER_USER", default=20)
SWITCHBOARD_WS_MAX_PER_ADDRESS = env.int("SWITCHBOARD_WS_MAX_PER_ADDRESS", default=200)
# Threads writing the sockets' posts in batches on PostgreSQL, each with its own connection:
# posts to different rooms commit in parallel. SQLite has one writer, so it always gets one.
SWITCHBOARD_POST_LANES = env.int("SWITCHBOARD_POST_LANES", default=4)
# A `subscribe` whose `since` is further back than this gets `resync_required` (use REST).
SWITCHBOARD_REPLAY_LIMIT = env.int("SWITCHBOARD_REPLAY_LIMIT", default=500)

# Each server process checks every this many seconds that the channel layer still delivers
# to it (a heartbeat through Redis); when one is lost it rejoins its groups and its rooms and
# jobs catch up from the database.
SWITCHBOARD_HEARTBEAT = env.float("SWITCHBOARD_HEARTBEAT", default=5.0)
# On SIGTERM an ASGI process closes its sockets (1012) spread over this many seconds before it
# stops (realtime/sockets/drain.py): a rolling restart moves clients over a few at a time.
SWITCHBOARD_DRAIN_SECONDS = env.float("SWITCHBOARD_DRAIN_SECONDS", default=10.0)

# Redis connections each server process keeps for presence and socket accounting; callers
# beyond that wait (up to 5 s) for one to be free.
SWITCHBOARD_REDIS_CONNECTIONS = env.int("SWITCHBOARD_REDIS_CONNECTIONS", default=32)

# Presence: each process refreshes its sockets' entries every REFRESH seconds; an entry not
# refreshed for TTL seconds (its process died) is dropped and the room told.
SWITCHBOARD_PRESENCE_REFRESH = env.float("SWITCHBOARD_PRESENCE_REFRESH", default=15.0)
SWITCHBOARD_PRESENCE_TTL = env.float("SWITCHBOARD_PRESENCE_TTL", default=45.0)

# Anonymous visitors may always read public rooms; posting is a setting.
SWITCHBOARD_ANONYMOUS_POSTING = env.bool("SWITCHBOARD_ANONYMOUS_POSTING", default=False)

# ------------------------------------------------------------------ log tails
# Files that staff may follow live on `/ws/` as `log:<name>` and list at `/api/logs/`:
# `name=path,name=path` (a relative path is taken from the project directory). Nothing else
# can be read that way: no path ever comes from a request.
SWITCHBOARD_TAIL_FILES = env.str("SWITCHBOARD_TAIL_FILES", default="")
# Bytes of a line sent at most; the rest of a longer line is left out and the line marked cut.
SWITCHBOARD_TAIL_LINE_MAX = env.int("SWITCHBOARD_TAIL_LINE_MAX", default=4096)
# Seconds between two looks at a followed file (one reader per file per server process).
SWITCHBOARD_TAIL_POLL = env.float("SWITCHBOARD_TAIL_POLL", default=0.2)
# A `subscribe` with `since` gets at most this many bytes of older lines.
SWITCHBOARD_TAIL_REPLAY = env.int("SWITCHBOARD_TAIL_REPLAY", default=1024 * 1024)

# ------------------------------------------------------------------ logging
# With LOG_FILE the process logs to that file too (reopened when it is rotated).
LOG_FILE = env.str("LOG_FILE", default="")
# `json`: one JSON object per line, with the request, user, job and socket ids of each line
# (realtime/kernel/logcontext.py); `plain`: lines for people.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "realtime.kernel.logcontext.JsonFormatter"},
    },
    "filters": {
        "every_second": {"()": "jobs.log_filters.EverySecondTasks"},
        "context": {"()": "realtime.kernel.logcontext.ContextFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        },
        **(
            {
                "file": {
                    "class": "logging.handlers.WatchedFileHandler",
                    "filename": LOG_FILE,
                    "formatter": "json" if LOG_FORMAT == "json" else "plain",
                    "filters": ["context"],
                    "encoding": "utf-8",
                }
            }
            if LOG_FILE
            else {}
        ),
    },
    "root": {
        "handlers": ["console", "file"] if LOG_FILE else ["console"],
        "level": env.str("LOG_LEVEL", default="INFO"),
    },
    "loggers": {
        "health_check": {"level": "ERROR"},
        # Beat sends `jobs.queue_positions` every second: not a line per run in the worker's log.
        **{
            name: {"filters": ["every_second"]}
            for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")
        },
    },
}

# Metrics (`/metrics`, api/metrics.py): answered to these networks, and to anyone sending
# `Authorization: Bearer <METRICS_TOKEN>` when it is set; 404 to everyone else. Several
# processes (ASGI servers, Celery's pool) add up their metrics when PROMETHEUS_MULTIPROC_DIR
# names a directory they share, emptied before they start (`make run` does both).
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
METRICS_TOKEN = env("METRICS_TOKEN", default="")
