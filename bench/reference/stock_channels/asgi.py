"""ASGI application of the stock Channels reference (daphne or uvicorn serve it)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.reference.stock_channels.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)
from django.urls import path  # noqa: E402

from bench.reference.stock_channels.consumers import RoomBroadcastConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": URLRouter([path("ws/rooms/<str:room>/", RoomBroadcastConsumer.as_asgi())]),
    }
)
