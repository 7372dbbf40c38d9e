"""The rooms app: rooms, members, playlists, playback, chat and the WebSocket protocol."""

from django.apps import AppConfig


class RoomsConfig(AppConfig):
    """Rooms and everything that happens in them."""

    name = "rooms"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the runtime connection limits' admin page (rooms/admin_limits.py)."""
        from rooms import admin_limits  # noqa: F401
