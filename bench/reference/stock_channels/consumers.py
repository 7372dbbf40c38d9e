"""The consumer of `/ws/rooms/<room>/`: every text frame is group_sent to the room as is."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer


class RoomBroadcastConsumer(AsyncWebsocketConsumer):
    """Joins its room's group; each received frame goes to every member, the sender too."""

    group = ""

    async def connect(self) -> None:
        """Join the room's group, then accept."""
        self.group = f"room.{self.scope['url_route']['kwargs']['room']}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the room's group."""
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Send the frame to the room."""
        if text_data is not None:
            await self.channel_layer.group_send(
                self.group, {"type": "room.frame", "text": text_data}
            )

    async def room_frame(self, event: dict[str, Any]) -> None:
        """A room frame: write it to this socket."""
        await self.send(text_data=event["text"])
