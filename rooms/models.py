"""What SyncTV keeps in the database, the source of truth (ARCHITECTURE.md)."""

from __future__ import annotations

import secrets
import string
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from rooms.permissions import MemberStatus, Role

USER_MODEL = settings.AUTH_USER_MODEL
ID_ALPHABET = string.ascii_lowercase + string.digits


def new_public_id(length: int = 10) -> str:
    """A short random id that is safe in URLs and channel group names."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


class Profile(models.Model):
    """What SyncTV adds to a Django user: a display name and whether it is a guest."""

    user = models.OneToOneField(
        USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="synctv_profile",
    )
    display_name = models.CharField(max_length=64)
    is_guest = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)


class AuthToken(models.Model):
    """A bearer token; only its SHA-256 is stored. Valid until `expires_at` (fixed at issue),
    logout, or the next change of its user's password."""

    key_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(USER_MODEL, on_delete=models.CASCADE, related_name="synctv_tokens")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)


@receiver(pre_save, sender=USER_MODEL)
def revoke_tokens_on_password_change(
    sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any
) -> None:
    """Any change of a password (the API, the admin, `changepassword`, a shell) revokes every
    bearer token of that account; Django's session hash already ends its sessions."""
    if (
        raw
        or instance.pk is None
        or (update_fields is not None and "password" not in update_fields)
    ):
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True)
    old_hash = stored.first()
    if old_hash is not None and old_hash != instance.password:
        AuthToken.objects.filter(user_id=instance.pk).delete()


class Room(models.Model):
    """A room: one playlist, one playback state, one chat, its members."""

    id = models.CharField(primary_key=True, max_length=16, default=new_public_id, editable=False)
    name = models.CharField(max_length=100)
    password = models.CharField(max_length=256, blank=True, default="")
    hidden = models.BooleanField(default=False)
    settings = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    playlist_version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class Membership(models.Model):
    """A user's place in a room: role, status and granted permissions."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        USER_MODEL, on_delete=models.CASCADE, related_name="synctv_memberships"
    )
    role = models.CharField(max_length=16, choices=[(r.value, r.value) for r in Role])
    status = models.CharField(
        max_length=16,
        choices=[(s.value, s.value) for s in MemberStatus],
        default=MemberStatus.ACTIVE,
    )
    permissions = models.JSONField(default=list, blank=True)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="one_membership_per_user")
        ]


class Movie(models.Model):
    """One entry of a room's playlist."""

    id = models.CharField(primary_key=True, max_length=16, default=new_public_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="movies")
    url = models.CharField(max_length=2048)
    title = models.CharField(max_length=200)
    type = models.CharField(max_length=32)
    position = models.IntegerField()
    # [{url, label, lang}] WebVTT tracks, validated by rooms.services.playlist.
    subtitles = models.JSONField(default=list, blank=True)
    added_by = models.ForeignKey(USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "created_at"]
        indexes = [models.Index(fields=["room", "position"])]


class PlaybackState(models.Model):
    """Where a room's player is: versioned, changed only by one atomic UPDATE each time."""

    room = models.OneToOneField(
        Room, on_delete=models.CASCADE, primary_key=True, related_name="playback"
    )
    movie = models.ForeignKey(Movie, null=True, on_delete=models.SET_NULL, related_name="+")
    position = models.FloatField(default=0.0)
    playing = models.BooleanField(default=False)
    rate = models.FloatField(default=1.0)
    version = models.BigIntegerField(default=0)
    updated_at = models.BigIntegerField(default=0, help_text="server epoch milliseconds")


class ChatMessage(models.Model):
    """One chat line, kept for history."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="chat_messages")
    user = models.ForeignKey(USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField()
    sent_at = models.BigIntegerField(help_text="server epoch milliseconds")

    class Meta:
        indexes = [models.Index(fields=["room", "-id"])]


class Presence(models.Model):
    """One open WebSocket connection, on whichever node holds it: who is online where."""

    connection_id = models.CharField(primary_key=True, max_length=64)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="presences")
    user = models.ForeignKey(USER_MODEL, on_delete=models.CASCADE, related_name="+")
    node_id = models.CharField(max_length=128, db_index=True)
    connected_at = models.DateTimeField(auto_now_add=True)


def _limit_field(name: str, unit: str) -> models.PositiveIntegerField:
    """A limit staff may set; blank keeps `cluster.connection_limits.<name>` (same rule: >= 1)."""
    return models.PositiveIntegerField(
        name,
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=f"{unit}; blank: the configured default",
    )


class ConnectionLimitOverrides(models.Model):
    """The connection limits staff set at runtime (one row, SINGLETON_ID); a blank field keeps
    the configured default. Every node applies a change within seconds (cluster/limits.py)."""

    SINGLETON_ID = 1

    per_user = _limit_field("per user", "sockets per user")
    per_room = _limit_field("per room", "sockets per room")
    global_limit = _limit_field("global", "sockets in all")
    idle_timeout_secs = _limit_field("idle timeout", "seconds without a frame from the client")
    max_duration_secs = _limit_field("maximum duration", "seconds a socket may stay open")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "connection limits"

    def __str__(self) -> str:
        return "Connection limits"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """There is one row: whatever is saved is it."""
        self.pk = self.SINGLETON_ID
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> ConnectionLimitOverrides:
        """The row, made (all blank) the first time."""
        return cls.objects.get_or_create(pk=cls.SINGLETON_ID)[0]

    @classmethod
    def current_values(cls) -> dict[str, int | None]:
        """Staff's limits by the names of cluster.limits.LIMIT_NAMES (None: the default)."""
        row = cls.objects.filter(pk=cls.SINGLETON_ID).first()
        return row.values() if row is not None else {}

    def values(self) -> dict[str, int | None]:
        """This row's limits by the names of cluster.limits.LIMIT_NAMES."""
        return {
            "per_user": self.per_user,
            "per_room": self.per_room,
            "global_": self.global_limit,
            "idle_timeout_secs": self.idle_timeout_secs,
            "max_duration_secs": self.max_duration_secs,
        }


@receiver(post_save, sender=ConnectionLimitOverrides)
def apply_limit_overrides_here(
    sender: Any, instance: ConnectionLimitOverrides, **kwargs: Any
) -> None:
    """The node that saves the limits applies them at once; the others on their next read."""
    values = instance.values()
    transaction.on_commit(lambda: _apply_limits(values))


def _apply_limits(values: dict[str, int | None]) -> None:
    from cluster.connections import connection_manager
    from rooms import timeouts

    if connection_manager().limits.apply(values):
        timeouts.reschedule_everywhere()
