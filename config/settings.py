"""Settings, all read from the environment (see README: Configuration).

With nothing set, Pairwise runs on SQLite and a Celery broker on the file system, so a new machine
needs no server. Set DATABASE_URL and REDIS_URL (or CELERY_BROKER_URL) for PostgreSQL and Redis.
"""

from __future__ import annotations

from pathlib import Path

from .env import (
    LOG_LEVELS,
    env_bool,
    env_broker,
    env_choice,
    env_database,
    env_dir,
    env_hosts,
    env_int,
    env_origins,
    env_secret_key,
    refuse,
)

# Every variable is checked here, at start, with the bounds the README's Configuration table lists: a bad
# value raises ImproperlyConfigured with one line naming it, which manage.py and config.wsgi print alone.
BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_dir("PAIRWISE_VAR_DIR", BASE_DIR / "var", base=BASE_DIR)

DEBUG = env_bool("DEBUG", False)

# SECRET_KEY, else the key scripts/start keeps in var/secret_key, so commands run by hand in a
# quickstart checkout need nothing exported; outside DEBUG there is no default.
SECRET_KEY: str = env_secret_key("SECRET_KEY", VAR_DIR / "secret_key", debug=DEBUG)

ALLOWED_HOSTS = env_hosts("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # First, so that its createsuperuser (look-alike usernames refused in words) shadows Django's.
    "web",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI's own files, served from here: /api/docs/ works on an air-gapped network.
    "drf_spectacular_sidecar",
    # Celery beat's schedules in the database, editable in the admin (config.beat.Scheduler).
    "django_celery_beat",
    "annotation",
    "reward_models",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response; outside WhiteNoise, so static files carry it too.
    "annotation.pages.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "config.errors.ApiCommonMiddleware",  # CommonMiddleware, without slash redirects under /api/
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend_templates"],
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

DATABASES = {
    "default": env_database(
        "DATABASE_URL",
        f"sqlite:///{VAR_DIR / 'pairwise.sqlite3'}",
        conn_max_age=env_int(
            "DATABASE_CONN_MAX_AGE", 60, min_value=0, max_value=86_400, note="seconds, up to a day"
        ),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite has no row locks: IMMEDIATE transactions take the write lock at BEGIN, which serialises
    # the assignment engine's transactions on the embedded default.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # A server that accepts no connection (frozen, or its network dropping packets) is an outage answered
    # 503 within seconds, not a request held until the client gives up. A ?connect_timeout= in the URL wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # JIT off on every connection. The rating path's statements are index lookups of a few rows, which
    # JIT compilation only slows: at five million pairs the planner's cost estimates crossed jit_above_cost
    # and compiling added 8.6 to 38.6 ms to statements that run in under one (EXPLAIN ANALYZE, issue 22).
    # The agreement report and the exports read with COPY of plain columns, which JIT barely speeds up.
    # Parallel plans stay allowed: with the counters no statement of the rating path reads enough rows
    # to get one (bench/scale prints each statement's plan).
    database_options = DATABASES["default"]["OPTIONS"]
    database_options["options"] = f"{database_options.get('options', '')} -c jit=off".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Failed logins are counted on every way in, in the database, per address and username and per address,
# and refused past either limit for the rest of a 10-minute window (web.login_throttle). The address's
# limit is the higher one: one rater's mistakes must not lock out everyone behind the same office address.
AUTHENTICATION_BACKENDS = ["web.login_throttle.ThrottledModelBackend"]
PAIRWISE_LOGIN_FAILURES_PER_USER = env_int(
    "PAIRWISE_LOGIN_FAILURES_PER_USER", 10, min_value=1, max_value=1000
)
PAIRWISE_LOGIN_FAILURES_PER_ADDRESS = env_int(
    "PAIRWISE_LOGIN_FAILURES_PER_ADDRESS", 50, min_value=1, max_value=100_000
)
if PAIRWISE_LOGIN_FAILURES_PER_ADDRESS < PAIRWISE_LOGIN_FAILURES_PER_USER:
    raise refuse(
        "PAIRWISE_LOGIN_FAILURES_PER_ADDRESS",
        str(PAIRWISE_LOGIN_FAILURES_PER_ADDRESS),
        "is below the limit per username",
        f"use at least PAIRWISE_LOGIN_FAILURES_PER_USER ({PAIRWISE_LOGIN_FAILURES_PER_USER})",
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Static files (the API docs' Swagger UI, the rater pages' own files) are served from the installed apps
# too, so a server started without `collectstatic` (by hand, in a fresh container volume) shows them.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# The raters' login page; the admin keeps its own at /admin/login/.
LOGIN_URL = "login"

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HTTPS-only settings, off by default because the quickstart serves plain HTTP on localhost: a browser
# that once saw HSTS refuses plain HTTP on that host for SECURE_HSTS_SECONDS.
SECURE_HSTS_SECONDS = env_int(
    "SECURE_HSTS_SECONDS", 0, min_value=0, max_value=63_072_000, note="0 is off; 63072000 is two years"
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Load balancers and container health checks call /healthz over plain HTTP; a redirect would fail them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
BEHIND_HTTPS_PROXY = env_bool("BEHIND_HTTPS_PROXY", False)
if BEHIND_HTTPS_PROXY:
    # Only safe when the proxy sets X-Forwarded-Proto itself and drops any a client sends; without it,
    # a proxy that terminates HTTPS makes every request look like HTTP, and SECURE_SSL_REDIRECT loops.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Largest request body Django reads into memory; pair imports above it get a 413 (web.api.BodyLimitMixin).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int(
    "PAIRWISE_MAX_REQUEST_BYTES", 50 * 1024 * 1024, min_value=1024, max_value=1024**3, note="1 KiB to 1 GiB"
)
PAIRWISE_MAX_IMPORT_ITEMS = env_int("PAIRWISE_MAX_IMPORT_ITEMS", 50_000, min_value=1, max_value=1_000_000)

_renderers = ["rest_framework.renderers.JSONRenderer"]
if DEBUG:
    _renderers.append("rest_framework.renderers.BrowsableAPIRenderer")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": _renderers,
    "DEFAULT_PARSER_CLASSES": [
        "annotation.api.parsers.JSONParser",
        "annotation.api.parsers.JSONLinesParser",
        "annotation.api.parsers.JSONLinesAliasParser",
    ],
    "EXCEPTION_HANDLER": "web.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Pairwise API",
    "DESCRIPTION": "Human A-vs-B comparisons and reward models.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # API.md: anonymous callers see nothing but the login page and /healthz, the schema included.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One schema name per vocabulary (annotation.models), wherever a field uses it.
    "ENUM_NAME_OVERRIDES": {
        "Choice": "annotation.models.Choice",
        "ShownChoice": "annotation.models.ShownChoice",
        "Side": "annotation.models.Side",
        "RunStatus": "reward_models.models.RunStatus",
        "ScoringStatus": "reward_models.models.ScoringStatus",
    },
}

# Celery: Redis when REDIS_URL or CELERY_BROKER_URL is set; otherwise kombu's file-system transport,
# which needs no server (one machine only).
REDIS_URL = env_broker("REDIS_URL", "") or None
CELERY_BROKER_URL = env_broker("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "celery-broker"
    # kombu expects the folders to exist; make them so a hand-started worker works too.
    for _folder in ("processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # A Redis that hangs (stopped by a signal, a network dropping packets) must not hold a web request that
    # sends a task: a send gives up within seconds (a run is then sent again by runs_resend).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 2, "socket_connect_timeout": 2}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
# The cache (agreement reports and charts): Redis when it is configured, so that every web process shares
# them; otherwise each process's memory. Only a speed-up: while Redis is down every read is a miss
# (web.cache), so the timeouts keep an unreachable Redis from holding a page for long.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Task state lives in our own tables (training runs), so no result backend is needed.
CELERY_RESULT_BACKEND = None
# Acknowledged on receipt by default. Late acknowledgement (redelivery when a worker dies mid-task) is
# switched on per task, only where running twice is harmless: on Redis, a task that runs longer than the
# visibility timeout (one hour) is delivered again to another worker, so a late-acknowledged training run
# would start twice.
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# The schedules live in the database (django-celery-beat), where admins edit them; the entries below are
# written there once, when missing, and never overwrite an admin's change (config.beat).
CELERY_BEAT_SCHEDULER = "config.beat:Scheduler"
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "expire-stale-leases": {"task": "annotation.tasks.leases_expire", "schedule": 300.0},
    "export-snapshots": {"task": "reward_models.tasks.snapshots_export", "schedule": 3600.0},
    "auto-train": {"task": "reward_models.tasks.auto_train", "schedule": 300.0},
    "reap-lost-runs": {"task": "reward_models.tasks.runs_reap", "schedule": 60.0},
    "resend-lost-runs": {"task": "reward_models.tasks.runs_resend", "schedule": 60.0},
    # Uncertainty selection: score the open pairs without a priority with the active model (a round on the
    # training queue), clear the priorities of projects without one.
    "refresh-priorities": {"task": "reward_models.tasks.priorities_refresh", "schedule": 300.0},
}

# --- Reward models (reward_models/) ---
# Training runs go to their own queue, consumed by workers on training machines (README: Workers):
# `celery -A config worker --pool solo -Q training`. Everything else stays on the default queue.
CELERY_TASK_ROUTES = {
    "reward_models.tasks.training_run_execute": {"queue": "training"},
    # Scoring pairs loads a model: the training workers' business too.
    "reward_models.tasks.pair_scoring_execute": {"queue": "training"},
    "reward_models.tasks.priority_round_execute": {"queue": "training"},
}
# Snapshots and trained models: never under STATIC_ROOT or any served folder.
PAIRWISE_RUNS_DIR = env_dir("PAIRWISE_RUNS_DIR", VAR_DIR / "reward_models", base=BASE_DIR)
# A running run's worker writes its heartbeat every PAIRWISE_RUN_HEARTBEAT_SECONDS; the reaper fails a run
# whose heartbeat is older than PAIRWISE_RUN_LOST_AFTER_SECONDS ("worker lost"). The default is six
# heartbeats and at least a minute: the worker's own loop writes the heartbeat however slow the trainer
# is, and stops the trainer when a write fails, so six missed in a row mean no one trains the run any more;
# with the reaper's round every minute, a dead worker's run is failed within two minutes.
PAIRWISE_RUN_HEARTBEAT_SECONDS = env_int("PAIRWISE_RUN_HEARTBEAT_SECONDS", 10, min_value=1, max_value=600)
PAIRWISE_RUN_LOST_AFTER_SECONDS = env_int(
    "PAIRWISE_RUN_LOST_AFTER_SECONDS",
    max(60, 6 * PAIRWISE_RUN_HEARTBEAT_SECONDS),
    min_value=5,
    max_value=86_400,
    note="seconds, up to a day",
)
if PAIRWISE_RUN_LOST_AFTER_SECONDS < 3 * PAIRWISE_RUN_HEARTBEAT_SECONDS:
    # Else the reaper would fail runs whose worker is alive and on time.
    raise refuse(
        "PAIRWISE_RUN_LOST_AFTER_SECONDS",
        str(PAIRWISE_RUN_LOST_AFTER_SECONDS),
        "is too short for the heartbeat",
        f"use at least 3 x PAIRWISE_RUN_HEARTBEAT_SECONDS ({3 * PAIRWISE_RUN_HEARTBEAT_SECONDS})",
    )
# A queued run last sent to the training queue longer ago than this is sent again if its message is gone
# from the broker (services.runs_resend, beat every minute): with the default a lost run is sent again at
# most 5 minutes after its last send.
PAIRWISE_RUN_RESEND_AFTER_SECONDS = env_int(
    "PAIRWISE_RUN_RESEND_AFTER_SECONDS", 240, min_value=10, max_value=86_400, note="seconds, up to a day"
)
# Processes per training run: N > 1 runs the trainer under torchrun, one process per GPU of the worker.
PAIRWISE_TRAINING_PROCESSES = env_int("PAIRWISE_TRAINING_PROCESSES", 1, min_value=1, max_value=64)
# Most responses one POST /api/v1/score/ may carry (413 above), scored in one batched forward pass.
PAIRWISE_SCORE_MAX_RESPONSES = 64
# Most characters of one text (the prompt or a response) and of all texts of one POST /api/v1/score/ (413
# above). The model reads at most max_length tokens of each text and the rest is cut unread, so these only
# bound the memory and time a request may take.
PAIRWISE_SCORE_MAX_TEXT_CHARS = 100_000
PAIRWISE_SCORE_MAX_REQUEST_CHARS = 1_000_000
# Where the web process scores: "cpu", or "auto"/"cuda" on a web machine with a GPU.
PAIRWISE_SCORE_DEVICE = env_choice("PAIRWISE_SCORE_DEVICE", "cpu", ["auto", "cpu", "cuda"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", LOG_LEVELS)},
}
