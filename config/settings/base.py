"""Settings shared by every environment; environment-specific modules extend this one."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url

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
    "auditlog",
    "channels",
    "accounts",
    "persistence",
    "marketdata",
    "strategies",
    "trading",
    "backtests",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After authentication, so the actor of every audited change is the request's user.
    "auditlog.middleware.AuditlogMiddleware",
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
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    # Under ASGI, Django serves each request on a thread of its own, so a persistent
    # connection lasts one request: daphne would open a PostgreSQL connection per request.
    # DATABASE_POOL=N keeps up to N open in a pool instead (`make run` sets it for the web
    # server; Celery workers keep their persistent connections).
    POOL_SIZE = env_int("DATABASE_POOL", 0)
    if POOL_SIZE > 0 and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses a pool with persistence
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": POOL_SIZE,
            "timeout": 10,  # seconds a request waits for a free connection
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

STATIC_URL = "static/"
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
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
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
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("THROTTLE_ANON", "60/minute"),
        "user": env_str("THROTTLE_USER", "6000/minute"),
    },
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 30)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7)),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tradelab API",
    "DESCRIPTION": "Back-office and research lab for systematic trading.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Domain settings ------------------------------------------------------------------
# Where artifacts and cached results live: "db" (blob column) or "file" (under MEDIA_ROOT).
ARTIFACT_STORE = env_str("ARTIFACT_STORE", "db")
# A position stream is snapshotted every N events.
LEDGER_SNAPSHOT_EVERY = env_int("LEDGER_SNAPSHOT_EVERY", 100)

AUDITLOG_INCLUDE_ALL_MODELS = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
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

# --- Trading ledger (owned by trading/: services/, ingest.py, selectors.py) ---------------
# The portfolio's cash is this plus every fill's cash flow, minus fees.
LEDGER_STARTING_CASH = env_str("LEDGER_STARTING_CASH", "0")
# Orders, positions/trades and backtest runs each have a "status" with its own choices;
# naming every set keeps the OpenAPI schema stable and free of collision warnings.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {  # type: ignore[assignment]
    "OrderStatusEnum": "trading.models.OrderStatus",
    "OpenClosedStatusEnum": "trading.models.PositionStatus",
    "RunStatusEnum": "backtests.models.RunStatus",
}
