"""The Django admin for rooms; changes that clients must see go through rooms.services."""

from django.contrib import admin

from rooms.models import ChatMessage, Membership, Movie, PlaybackState, Presence, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms, with their members and playlist inline."""

    list_display = ("id", "name", "hidden", "created_by", "created_at")
    search_fields = ("id", "name")
    readonly_fields = ("id", "playlist_version", "created_at")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Who is in which room, with which role."""

    list_display = ("room", "user", "role", "status")
    list_filter = ("role", "status")


@admin.register(Movie)
class MovieAdmin(admin.ModelAdmin):
    """Playlist entries."""

    list_display = ("id", "room", "title", "type", "position")


@admin.register(PlaybackState)
class PlaybackStateAdmin(admin.ModelAdmin):
    """Playback state per room (read-only: changes go through the services)."""

    list_display = ("room", "movie", "position", "playing", "rate", "version")
    readonly_fields = ("room", "movie", "position", "playing", "rate", "version", "updated_at")


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin):
    """Chat history."""

    list_display = ("id", "room", "user", "sent_at")


@admin.register(Presence)
class PresenceAdmin(admin.ModelAdmin):
    """Open sockets, by node."""

    list_display = ("connection_id", "room", "user", "node_id", "connected_at")
    list_filter = ("node_id",)
