"""Stock Channels: one AsyncWebsocketConsumer doing group_send on the in-memory layer."""
