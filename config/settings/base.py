"""Settings shared by every environment; environment-specific modules extend this one."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("TRADELAB_VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env_str("SECRET_KEY", "insecure-local-development-key-change-me")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by the app (no CDN)
    "auditlog",
    "channels",
    "axes",
    "csp",
    "django_prometheus",
    "accounts",
    "persistence",
    "marketdata",
    "strategies",
    "trading",
    "backtests",
    "studies",
    "portfolios",
]

MIDDLEWARE = [
    # First and last: django-prometheus times every request through the whole stack.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # After authentication, so the actor of every audited change is the request's user.
    "auditlog.middleware.AuditlogMiddleware",
    # Turns a login that axes refused into its lockout page (429) instead of the login form.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# DATABASE_URL unset means the embedded SQLite database, so a newcomer needs nothing else.
DATABASE_URL = env_str("DATABASE_URL")
# Least-privilege roles on PostgreSQL (persistence/roles.py): DATABASE_URL names the app's
# role, which reads and writes rows; MIGRATION_DATABASE_URL, when set, names the role that
# owns the tables, and `manage.py migrate` (only it) connects with that one, then grants the
# app's role its privileges again. Unset, `migrate` connects with DATABASE_URL.
MIGRATION_DATABASE_URL = env_str("MIGRATION_DATABASE_URL")
if DATABASE_URL:
    # Health checks: a connection that died with its server (a restart, a failover) is
    # replaced before it is used, instead of failing the request that drew it. Without a
    # pool, Django pings a persistent connection before reusing it for a new request; with
    # one, Django makes the pool check each connection it hands out (psycopg-pool's
    # `check=ConnectionPool.check_connection`: Django sets it from this setting, and a
    # `check` in OPTIONS["pool"] would be a TypeError), and persistence.pool replaces all the
    # dead ones at once.
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    }
    # Under ASGI, Django serves each request on a thread of its own, so a persistent
    # connection lasts one request: daphne would open a PostgreSQL connection per request.
    # DATABASE_POOL=N keeps up to N open in a pool instead (`make run` sets it for the web
    # server; Celery workers keep their persistent connections).
    POOL_SIZE = env_int("DATABASE_POOL", 0)
    if POOL_SIZE > 0 and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses a pool with persistence
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            # A fixed size, as psycopg-pool's own default: persistence.pool sweeps the idle
            # connections (`pool.check()`) under traffic, which grows a smaller pool anyway.
            "min_size": POOL_SIZE,
            "max_size": POOL_SIZE,
            # Seconds a request waits for a connection before it is answered 503: while the
            # server is down, every request waits this long, so it is short.
            "timeout": 5,
            # A failing reconnection retries with backoff (1 s, 2 s, 4 s ...); left at the
            # default of 5 minutes, a retry was still sleeping many seconds after the server
            # came back, and requests kept failing for 25 s. Giving up after 5 s caps the
            # wait at 2 s: the next request that finds no connection starts a new attempt.
            "reconnect_timeout": 5,
        }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "tradelab.sqlite3"),
            # Celery workers and the web process share the file: wait for locks, don't fail.
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

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
FORMAT_MODULE_PATH = "config.formats"  # 24-hour ISO dates, "UTC" said once

STATIC_URL = "static/"
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "config.vendor.VendorFinder",  # vendor/plotly.min.js from the pinned plotly wheel
]
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/lab/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Login limits (django-axes; the handler is accounts/login_limits.py) ----------------
# Every authenticate() with a request counts: the login page, the admin's, the API's token
# endpoint. Past LOGIN_FAILURE_LIMIT failures for one username (from any address), or from one
# address (at any usernames), logins are refused with a 429 page until LOGIN_COOLOFF_MINUTES
# pass with no further attempt. A success forgets that user's failures from that address.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first, so a locked-out login is never checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each one counted on its own
AXES_RESET_ON_SUCCESS = True
AXES_HANDLER = "accounts.login_limits.LoginLimitHandler"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# --- Content-Security-Policy (django-csp), in every environment -------------------------
# Scripts and styles come only from our own static files: no inline <script>, no style=""
# (the templates pass data in data-* attributes and json_script blocks). img-src allows
# data: URIs, which Swagger UI's stylesheet uses for its icons; connect-src 'self' covers the
# progress WebSockets on the same host.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Sign-up and email (owned by accounts/) -------------------------------------------
# Anyone may create an ordinary account (API `auth/register/`, page `/accounts/signup/`)
# only while this is on; `make run`'s local settings turn it on.
REGISTRATION_OPEN = env_bool("REGISTRATION_OPEN", False)
# Sign-up attempts per client address, API and page together (DRF rate syntax).
REGISTRATION_THROTTLE_RATE = env_str("THROTTLE_REGISTER", "5/hour")
# Password-reset mail is printed to the console until EMAIL_HOST names an SMTP server.
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)  # seconds; a stuck server must not hang a page
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Tradelab <noreply@localhost>")

# --- Integrations: each one switches on by setting its URL. ---------------------------
# REDIS_URL unset means the embedded redis-server that `make run` starts (see config/embedded.py).
REDIS_URL = env_str("REDIS_URL")

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL or "cache+memory://")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The hard time limit stays below the broker's visibility timeout, so a task that a dead
# worker never acknowledged is redelivered only after any live copy has been killed.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 5 * 60}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"

if REDIS_URL:
    # redis-py 8 reads with a 5 s socket timeout by default, and channels_redis waits on an
    # idle channel with a blocking BZPOPMIN as long as that: every quiet websocket died with
    # 1011 (django/channels_redis#422). Blocking reads must not time out client-side.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
    # One cache for every web and worker process: API throttles count across processes, and
    # a worker's progress (a candle upload's) is visible to the web process that reports it.
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    # Only valid inside one process (tests, shell); `make run` always sets REDIS_URL.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.JWTAuthentication",  # simplejwt, audited
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # One dialect for every endpoint: cursor pages (?limit=, 100 by default, at most 1,000)
    # and domain errors as 400 per field / 409 conflict; see config/api/.
    "DEFAULT_PAGINATION_CLASS": "config.api.pagination.CappedCursorPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "config.api.errors.api_exception_handler",
    # JSON bodies nested deeper than 64 levels are a 400 (config/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "config.api.parsers.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # drf-spectacular's, with every operation's error responses (config/api/schema.py).
    "DEFAULT_SCHEMA_CLASS": "config.api.schema.ApiAutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("THROTTLE_ANON", "60/minute"),
        "user": env_str("THROTTLE_USER", "6000/minute"),
    },
    # Throttles count per client address. 0: the address of the connection, and
    # X-Forwarded-For is ignored (anyone can write it). Behind N proxies that each append to
    # it, N: the address the Nth proxy from us saw.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 30)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7)),
    # A refresh token naming no valid user is a 401 (see accounts/authentication.py).
    "TOKEN_REFRESH_SERIALIZER": "accounts.authentication.TokenRefreshSerializer",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tradelab API",
    "DESCRIPTION": "Back-office and research lab for systematic trading.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the drf-spectacular-sidecar package, so /api/docs/ works offline and
    # under the Content-Security-Policy.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Domain settings ------------------------------------------------------------------
# Where artifacts and cached results live: "db" (blob column) or "file" (under MEDIA_ROOT).
ARTIFACT_STORE = env_str("ARTIFACT_STORE", "db")
# A position stream is snapshotted every N events.
LEDGER_SNAPSHOT_EVERY = env_int("LEDGER_SNAPSHOT_EVERY", 100)
# Candle uploads (POST /api/v1/candles/upload/): larger files are refused with a 413 (a
# reverse proxy's body limit should sit a little above it); files larger than the async
# threshold are imported by a Celery task. File parts of a multipart body are not counted by
# DATA_UPLOAD_MAX_MEMORY_SIZE; beyond FILE_UPLOAD_MAX_MEMORY_SIZE they are spooled to disk.
CANDLE_UPLOAD_MAX_BYTES = env_int("CANDLE_UPLOAD_MAX_BYTES", 50 * 1024 * 1024)
CANDLE_UPLOAD_ASYNC_BYTES = env_int("CANDLE_UPLOAD_ASYNC_BYTES", 5 * 1024 * 1024)
# Bars per candle download (GET /api/v1/candles/download/); a larger range is a 400.
CANDLE_DOWNLOAD_MAX_BARS = env_int("CANDLE_DOWNLOAD_MAX_BARS", 2_000_000)

AUDITLOG_INCLUDE_ALL_MODELS = False

# WARNING by default: `make run`'s banner and real problems, not a line per request or task.
LOG_LEVEL = (env_str("LOG_LEVEL") or "WARNING").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Celery logs each task's full return value (a sweep chunk's every row) at INFO when it
    # succeeds; failures, at ERROR, still show.
    "loggers": {"celery.app.trace": {"level": "WARNING"}},
}

# --- Backtests as a service (owned by backtests/; see backtests/services/) -----------
# Progress messages: at most one per this many seconds (and one per percent) per run.
BACKTEST_PROGRESS_MIN_INTERVAL = float(env_str("BACKTEST_PROGRESS_MIN_INTERVAL", "0.1"))
# A running run whose worker has sent no sign of life for this long is considered lost:
# it is requeued, or failed once it has been started BACKTEST_MAX_ATTEMPTS times.
BACKTEST_STALE_AFTER_SECONDS = env_int("BACKTEST_STALE_AFTER_SECONDS", 120)
BACKTEST_MAX_ATTEMPTS = env_int("BACKTEST_MAX_ATTEMPTS", 3)
# Sweep combinations per Celery chunk; 0 sizes chunks so every worker gets several.
SWEEP_CHUNK_SIZE = env_int("SWEEP_CHUNK_SIZE", 0)
SWEEP_MAX_COMBINATIONS = env_int("SWEEP_MAX_COMBINATIONS", 5000)
# Equity rows beyond this are thinned (last value per period) in the xlsx export.
EXPORT_MAX_EQUITY_ROWS = env_int("EXPORT_MAX_EQUITY_ROWS", 20_000)
CELERY_BEAT_SCHEDULE = {
    "backtests-reap-stale": {"task": "backtests.tasks.reap_stale", "schedule": 60.0},
}

# --- Ledger checkpoints (owned by persistence/checkpoints.py) ---------------------------
# The chain cannot show that its newest events were deleted; signed checkpoints of its head,
# kept outside the event table, can (`verify_ledger --against`). HMAC-SHA256 key: unset, one
# is derived from SECRET_KEY for this purpose alone (and changes with it). Old keys, to keep
# verifying the checkpoints they signed, go in the fallbacks (comma-separated).
LEDGER_CHECKPOINT_KEY = env_str("LEDGER_CHECKPOINT_KEY")
LEDGER_CHECKPOINT_KEY_FALLBACKS = env_list("LEDGER_CHECKPOINT_KEY_FALLBACKS", [])
# The witnesses: an append-only JSON-lines file, and optionally a table in a second database.
LEDGER_CHECKPOINT_PATH = Path(
    env_str("LEDGER_CHECKPOINT_PATH", str(VAR_DIR / "ledger-checkpoints.jsonl"))
)
LEDGER_CHECKPOINT_DATABASE_URL = env_str("LEDGER_CHECKPOINT_DATABASE_URL")
# Celery beat writes one every this many seconds; 0 leaves it to `manage.py ledger_checkpoint`.
LEDGER_CHECKPOINT_INTERVAL_SECONDS = env_int("LEDGER_CHECKPOINT_INTERVAL_SECONDS", 600)
if LEDGER_CHECKPOINT_INTERVAL_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["persistence-ledger-checkpoint"] = {
        "task": "persistence.tasks.ledger_checkpoint",
        "schedule": float(LEDGER_CHECKPOINT_INTERVAL_SECONDS),
    }

# --- Trading ledger (owned by trading/: services/, ingest.py, selectors.py) ---------------
# The portfolio's cash is this plus every fill's cash flow, minus fees.
LEDGER_STARTING_CASH = env_str("LEDGER_STARTING_CASH", "0")
# Orders, positions/trades and backtest runs each have a "status" with its own choices;
# naming every set keeps the OpenAPI schema stable and free of collision warnings.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {  # type: ignore[assignment]
    "OrderStatusEnum": "trading.models.OrderStatus",
    "OpenClosedStatusEnum": "trading.models.PositionStatus",
    "RunStatusEnum": "backtests.models.RunStatus",
    "RankMetricEnum": "backtests.services.sweeps.RANKABLE_METRICS",
}

# --- Operator metrics (config/metrics.py): GET /metrics for Prometheus -----------------
# Allowed with `Authorization: Bearer <METRICS_TOKEN>` (unset: no token opens it), or from an
# address in METRICS_ALLOW: IPs or CIDRs, comma-separated; set it empty to allow none. The
# address is the direct peer's, and a proxied request (X-Forwarded-For, Forwarded,
# X-Real-IP) is never let in by address: behind a proxy, use the token.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOW = [
    entry.strip() for entry in env_str("METRICS_ALLOW", "127.0.0.1,::1").split(",") if entry.strip()
]
# Seconds a scrape waits for the Redis broker before reporting tradelab_broker_up 0.
METRICS_BROKER_TIMEOUT = float(env_str("METRICS_BROKER_TIMEOUT", "0.5"))
# django-prometheus counts each database's queries, errors and connections through a
# wrapper of its backend; the wrapper behaves as the backend it wraps (same vendor).
_PROMETHEUS_BACKENDS = {
    "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
}
for _database in DATABASES.values():
    _database["ENGINE"] = _PROMETHEUS_BACKENDS.get(_database["ENGINE"], _database["ENGINE"])

# --- Research studies (owned by studies/; see studies/services/) ------------------------
# Trials per optimisation (per fold), folds per walk-forward and trials in flight, at most.
STUDY_MAX_TRIALS = env_int("STUDY_MAX_TRIALS", 5000)
STUDY_MAX_FOLDS = env_int("STUDY_MAX_FOLDS", 50)
STUDY_MAX_PARALLELISM = env_int("STUDY_MAX_PARALLELISM", 64)
# Per-period returns each trial keeps for the Deflated Sharpe Ratio and PBO (studies.stats).
STUDY_RETURN_PERIODS = env_int("STUDY_RETURN_PERIODS", 400)
# A trial's worker writes a heartbeat this often while the engine runs; a trial whose
# heartbeat is older than STUDY_STALE_AFTER_SECONDS lost its worker and is recorded failed
# (one that never started is dispatched again). Redelivered trials give up after this many.
STUDY_HEARTBEAT_SECONDS = float(env_str("STUDY_HEARTBEAT_SECONDS", "5"))
STUDY_STALE_AFTER_SECONDS = env_int("STUDY_STALE_AFTER_SECONDS", 60)
STUDY_MAX_ATTEMPTS = env_int("STUDY_MAX_ATTEMPTS", 3)
# Grid and random trials go to workers in batches of up to this many (sharing indicators);
# TPE and NSGA-II ask one trial at a time, so each learns from every result before it.
STUDY_BATCH_SIZE = env_int("STUDY_BATCH_SIZE", 8)
# A sweep's DSR and PBO are computed on request; above this many bar-backtests (combinations
# times bars) the request is refused (409) rather than holding a web worker for minutes.
STUDY_SWEEP_STATS_MAX_BAR_RUNS = env_int("STUDY_SWEEP_STATS_MAX_BAR_RUNS", 100_000_000)
CELERY_BEAT_SCHEDULE["studies-reap-stale"] = {
    "task": "studies.tasks.reap_stale",
    "schedule": 60.0,
}
