"""Django settings, built from the typed SyncTV configuration (synctv_project/config.py).

Nothing here reads the environment directly: `load_config()` does, once.
"""

import sys
from pathlib import Path

import environ

from synctv_project.config import (
    ConfigError,
    load_config,
    resolve_node_id,
    resolve_secret_key,
    sqlite_path,
)

BASE_DIR = Path(__file__).resolve().parent.parent

try:
    SYNCTV = load_config()
    SECRET_KEY = resolve_secret_key(SYNCTV)
except ConfigError as exc:
    sys.exit(f"synctv: {exc}")

SYNCTV_NODE_ID = resolve_node_id(SYNCTV)
DEBUG = SYNCTV.server.debug
ALLOWED_HOSTS = SYNCTV.server.allowed_hosts

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_prometheus",
    "monitoring",
    "rooms",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "monitoring.logging.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "synctv_project.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "synctv_project.urls"
ASGI_APPLICATION = "synctv_project.asgi.application"

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


# PostgreSQL connections one node may hold at most (docs/performance.md).
DATABASE_POOL_SIZE = 20


def _database(url: str) -> dict:
    """Django's DATABASES entry for the configured URL, with django-prometheus's metrics."""
    database = environ.Env.db_url_config(url)
    if sqlite_path(SYNCTV) is not None:
        database["ENGINE"] = "monitoring.db.sqlite3"
        # IMMEDIATE: a transaction takes the write lock at BEGIN, so concurrent
        # read-then-write transactions queue instead of failing with "database is locked".
        database["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    else:
        database["ENGINE"] = "monitoring.db.postgresql"
        # A pool, not persistent connections: under ASGI every request runs in a thread of
        # its own context, and with CONN_MAX_AGE each of them kept a connection open, so a
        # burst of requests (a watch party's guests signing in) exhausted max_connections.
        # The pool bounds a node's connections; a request waits for one instead.
        options = database.setdefault("OPTIONS", {})
        options["connect_timeout"] = 5
        options["pool"] = {"min_size": 1, "max_size": DATABASE_POOL_SIZE, "timeout": 10}
    return database


DATABASES = {"default": _database(SYNCTV.database.url)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One layer class in both modes (ARCHITECTURE.md): an empty redis_url is single-node mode.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "cluster.layer.ClusterChannelLayer",
        "CONFIG": {
            "capacity": SYNCTV.websocket.send_queue_capacity,
            "redis_url": SYNCTV.redis.url,
            "redis_cluster": SYNCTV.redis.cluster_mode,
            "key_prefix": SYNCTV.redis.key_prefix,
            "node_id": SYNCTV_NODE_ID,
            "dedup_window_secs": SYNCTV.cluster.dedup_window_secs,
            "on_recovered": "rooms.resync.resync_rooms",
            "routing": "rooms.services.events.route_group",
            "stream_max_events": SYNCTV.cluster.event_stream_max_events,
            "stream_max_age_secs": SYNCTV.cluster.event_stream_max_age_secs,
        },
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 8},
    },
]

# Non-public hosts the movie probe may reach anyway (rooms/probe.py, docs/security.md).
SYNCTV_PROBE_ALLOWED_NETWORKS = SYNCTV.jobs.probe_allowed_networks

# Browser-side hardening (docs/security.md). The CSP comes from SecurityHeadersMiddleware;
# these are Django's own headers, set explicitly (most are its defaults).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"  # room URLs never leak to movie hosts
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind a TLS proxy (security.behind_tls_proxy): its X-Forwarded-Proto says the request
# was HTTPS, and the cookies of such requests get Secure (SecurityHeadersMiddleware). Safe
# only when the proxy overwrites the header and clients cannot reach the node directly.
if SYNCTV.security.behind_tls_proxy:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # static/synctv/api.js reads it to send X-CSRFToken
# Error pages and reports (server.debug) mask URL passwords in settings and frame variables.
DEFAULT_EXCEPTION_REPORTER_FILTER = "monitoring.logging.RedactingExceptionReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "monitoring.logging.RedactingExceptionReporter"
CSRF_TRUSTED_ORIGINS = [origin for origin in SYNCTV.server.allowed_origins if "://" in origin]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS: list = [BASE_DIR / "static"]
# hls.js comes from the npm registry (`npm ci`, package-lock.json) and is served from
# node_modules as /static/vendor/hls.js/hls.mjs. Without node_modules the node still starts
# (only that file is missing), so the entry is added only when the directory exists.
HLS_JS_DIST = BASE_DIR / "node_modules" / "hls.js" / "dist"
if HLS_JS_DIST.is_dir():
    STATICFILES_DIRS.append(("vendor/hls.js", HLS_JS_DIST))
WHITENOISE_USE_FINDERS = True
# With debug on, edited static files are served as they are now (no restart needed).
WHITENOISE_AUTOREFRESH = DEBUG

PROMETHEUS_EXPORT_MIGRATIONS = False

# Accounts (docs/api.md): sessions are checked by our backend too, so an expired guest's
# cookie signs nobody in; bearer tokens expire; the sign-in endpoints are throttled, the
# counters kept in this node's cache (LocMem: per node, nothing shared between nodes).
AUTHENTICATION_BACKENDS = ["rooms.services.accounts.AccountBackend"]
SYNCTV_TOKEN_LIFETIME_DAYS = SYNCTV.auth.token_lifetime_days
SYNCTV_THROTTLE_RATES = (
    SYNCTV.auth.throttle.model_dump(exclude={"enabled"}) if SYNCTV.auth.throttle.enabled else {}
)
NINJA_NUM_PROXIES = SYNCTV.auth.num_proxies

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "monitoring.logging.ContextFilter"},
        "redact": {"()": "monitoring.logging.RedactingFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "console": {"format": "%(asctime)s %(levelname)s %(name)s [%(node_id)s] %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": SYNCTV.logging.format,
            "filters": ["context", "redact"],
        },
    },
    "root": {"handlers": ["stderr"], "level": SYNCTV.logging.level},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
    },
}
