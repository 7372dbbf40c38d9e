"""ASGI entry point: HTTP goes to Django, room sockets through origin check and auth,
and the `synctv.jobs` channel (runworker, or the server in single-node mode) to JobsConsumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv_project.settings")
django_application = get_asgi_application()

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from rooms.consumers import RoomConsumer  # noqa: E402
from rooms.jobs import JOBS_CHANNEL, JobsConsumer  # noqa: E402
from rooms.ws_auth import OriginCheckMiddleware  # noqa: E402

websocket_routes = [path("ws/rooms/<str:room_id>/", RoomConsumer.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # The socket's user, from its token or session cookie, is read by the consumer
        # itself (rooms.ws_auth.socket_admission).
        "websocket": OriginCheckMiddleware(URLRouter(websocket_routes)),
        "channel": ChannelNameRouter({JOBS_CHANNEL: JobsConsumer.as_asgi()}),
    }
)
