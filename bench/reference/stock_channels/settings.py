"""Django settings of the stock Channels reference: no database, no auth, Channels defaults."""

SECRET_KEY = "bench-reference-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
DATABASES: dict[str, dict[str, str]] = {}
ROOT_URLCONF = "bench.reference.stock_channels.urls"
ASGI_APPLICATION = "bench.reference.stock_channels.asgi.application"
# The layer exactly as the Channels docs set it up: default capacity (100) and expiry.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING"},
}
