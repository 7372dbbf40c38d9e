"""The Django admin for rooms; every change that clients must see goes through rooms.services.

Nothing here writes a room, a member, a movie, a chat line or an account's standing to the
database directly: each save and delete calls rooms.services.staff, which calls the services
the HTTP API calls, so connected clients get the same frames (docs/admin.md). A service's
refusal (a bad value, the room's creator) rolls the whole admin request back and is shown
as an error message. Other modules register their own models on `admin.site` as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path

from rooms import staff_live
from rooms.errors import ServiceError
from rooms.models import ChatMessage, Membership, Movie, PlaybackState, Presence, Room
from rooms.services import staff

MEMBER_FIELDS = ("role", "status", "permissions")
MOVIE_FIELDS = ("url", "title", "subtitles")


def _changes(form: forms.ModelForm, fields: tuple[str, ...]) -> dict[str, Any]:
    """The form's changed values among `fields`, as a service takes them."""
    return {name: form.cleaned_data[name] for name in form.changed_data if name in fields}


class ThroughServices(admin.ModelAdmin):
    """A ModelAdmin whose saves and deletes call services: a ServiceError they raise undoes
    the request (the admin's own transaction) and comes back as an error message."""

    def _refusal_shown(
        self, request: HttpRequest, view: Callable[[], HttpResponse]
    ) -> HttpResponse:
        try:
            return view()
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """The add/change page; a service's refusal is shown on the page again."""
        return self._refusal_shown(
            request, partial(super().changeform_view, request, *args, **kwargs)
        )

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """The delete page; a service's refusal is shown on it."""
        return self._refusal_shown(request, partial(super().delete_view, request, *args, **kwargs))

    def changelist_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """The list and its actions; a service's refusal is shown above it."""
        return self._refusal_shown(
            request, partial(super().changelist_view, request, *args, **kwargs)
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, Any]:
        """What a delete takes with it, listed; the rows that go with it (members, playback,
        presence) are the service's to delete, so the admin's own delete permission on
        them, which ReadOnly admins deny, is not asked."""
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        """'Delete selected' deletes each one through delete_model, hence the services: all
        or none (one transaction; the clients hear of them once it commits)."""
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)


class ReadOnly(admin.ModelAdmin):
    """Shown, never changed here: its rows follow from what clients do."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never added here."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never changed here."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never deleted here."""
        return False


# --- rooms, with members and playlist inline ---------------------------------------------


class RoomForm(forms.ModelForm):
    """A room's editable fields; the password is never shown, only replaced or removed."""

    new_password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current password. Stored hashed.",
    )
    remove_password = forms.BooleanField(required=False, help_text="Open the room to anyone.")

    class Meta:
        model = Room
        fields = ("name", "hidden", "settings")

    def room_changes(self) -> dict[str, Any]:
        """What update_room is to change."""
        changes = _changes(self, ("name", "hidden", "settings"))
        if self.cleaned_data.get("remove_password"):
            changes["password"] = ""
        elif self.cleaned_data.get("new_password"):
            changes["password"] = self.cleaned_data["new_password"]
        return changes


class MembershipInline(admin.TabularInline):
    """A room's members: role, status and permissions, changed through the members service."""

    model = Membership
    fields = ("user", "role", "status", "permissions", "joined_at")
    readonly_fields = ("user", "joined_at")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Members join through the app; staff change them, never add them."""
        return False


class MovieInline(admin.TabularInline):
    """A room's playlist: added, edited and removed through the playlist service."""

    model = Movie
    fields = ("position", "title", "url", "type", "subtitles")
    readonly_fields = ("position", "type")
    extra = 0
    ordering = ("position", "created_at")


@admin.register(Room)
class RoomAdmin(ThroughServices):
    """Rooms, with their members and playlist inline; edits and deletes reach the clients."""

    form = RoomForm
    list_display = ("id", "name", "hidden", "has_password", "created_by", "created_at")
    list_filter = ("hidden",)
    search_fields = ("id", "name", "created_by__username")
    readonly_fields = ("id", "created_by", "playlist_version", "created_at")
    fields = (*readonly_fields, "name", "hidden", "settings", "new_password", "remove_password")
    inlines = (MembershipInline, MovieInline)

    @admin.display(boolean=True)
    def has_password(self, room: Room) -> bool:
        """Whether joining needs a password."""
        return bool(room.password)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Rooms are created by their creators in the app (POST /api/rooms), not here."""
        return False

    def save_model(self, request: HttpRequest, obj: Room, form: RoomForm, change: bool) -> None:
        """Through update_room's rules: the password hashed, clients told (`room`)."""
        changes = form.room_changes()
        if changes:
            staff.update_room(request.user, obj.pk, changes)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Member and movie rows go through their services, never formset.save()."""
        room_id = form.instance.pk
        # What formset.save() would have recorded, for the admin's change message.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        if formset.model is Membership:
            for row in formset.forms:
                changes = _changes(row, MEMBER_FIELDS)
                if changes:
                    staff.update_member(request.user, room_id, row.instance.user_id, changes)
                    formset.changed_objects.append((row.instance, list(changes)))
        elif formset.model is Movie:
            self._save_playlist(request, room_id, formset)

    @staticmethod
    def _save_playlist(request: HttpRequest, room_id: str, formset: Any) -> None:
        for index, row in enumerate(formset.forms):
            existing = index < formset.initial_form_count()
            changes = _changes(row, MOVIE_FIELDS)
            if existing and formset.can_delete and formset._should_delete_form(row):
                staff.delete_movie(request.user, room_id, row.instance.pk)
                formset.deleted_objects.append(row.instance)
            elif not existing and row.has_changed():
                added = staff.add_movie(request.user, room_id, changes)
                row.instance.pk = added["id"]
                formset.new_objects.append(row.instance)
            elif existing and changes:
                staff.update_movie(request.user, room_id, row.instance.pk, changes)
                formset.changed_objects.append((row.instance, list(changes)))

    def delete_model(self, request: HttpRequest, obj: Room) -> None:
        """Its sockets on every node get `room_deleted` and close 4004."""
        staff.delete_room(request.user, obj.pk)


# --- members ------------------------------------------------------------------------------


@admin.register(Membership)
class MembershipAdmin(ThroughServices):
    """Who is in which room with which role; changes (a ban kicks) through the members service."""

    list_display = ("room", "user", "role", "status")
    list_filter = ("role", "status")
    search_fields = ("room__id", "room__name", "user__username")
    fields = ("room", "user", "joined_at", *MEMBER_FIELDS)
    readonly_fields = ("room", "user", "joined_at")
    actions = ("ban_members", "unban_members")

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Members join through the app."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """A member is banned, not deleted: the app would let them straight back in."""
        return False

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        """As PATCH /api/rooms/{id}/members/{user_id}: a ban closes the user's sockets (4003)."""
        changes = _changes(form, MEMBER_FIELDS)
        if changes:
            staff.update_member(request.user, obj.room_id, obj.user_id, changes)

    @admin.action(description="Ban the selected members (their sockets close 4003)")
    def ban_members(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Ban each selected member."""
        self._set_status(request, queryset, "banned")

    @admin.action(description="Lift the ban of the selected members")
    def unban_members(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Make each selected member active again."""
        self._set_status(request, queryset, "active")

    def _set_status(self, request: HttpRequest, queryset: QuerySet, status: str) -> None:
        rows = list(queryset.exclude(status=status))
        with transaction.atomic():  # all or none, as 'delete selected'
            for membership in rows:
                staff.update_member(
                    request.user, membership.room_id, membership.user_id, {"status": status}
                )
        self.message_user(request, f"{len(rows)} member(s) now {status}.")


# --- movies, chat, and what is only shown ---------------------------------------------------


@admin.register(Movie)
class MovieAdmin(ThroughServices):
    """Playlist entries; added, edited and removed through the playlist service (`playlist`)."""

    list_display = ("id", "room", "title", "type", "position")
    search_fields = ("id", "title", "url", "room__id", "room__name")
    readonly_fields = ("id", "type", "position", "added_by", "created_at")

    def get_fields(self, request: HttpRequest, obj: Movie | None = None) -> tuple[str, ...]:
        """The room is chosen when adding, then fixed."""
        return ("room", *MOVIE_FIELDS, *self.readonly_fields)

    def get_readonly_fields(
        self, request: HttpRequest, obj: Movie | None = None
    ) -> tuple[str, ...]:
        """The room of an existing movie cannot change."""
        return self.readonly_fields if obj is None else ("room", *self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Movie, form: Any, change: bool) -> None:
        """Added or changed through the playlist service; clients get `playlist`."""
        if change:
            changes = _changes(form, MOVIE_FIELDS)
            if changes:
                staff.update_movie(request.user, obj.room_id, obj.pk, changes)
            return
        fields = {name: form.cleaned_data[name] for name in MOVIE_FIELDS}
        added = staff.add_movie(request.user, obj.room_id, fields)
        obj.pk = added["id"]  # the admin's messages and redirect name the movie the service made
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Movie) -> None:
        """Removed through the playlist service; clients get `playlist`."""
        staff.delete_movie(request.user, obj.room_id, obj.pk)


@admin.register(ChatMessage)
class ChatMessageAdmin(ThroughServices):
    """Chat history; staff delete lines through the chat service (clients get `chat_deleted`)."""

    list_display = ("id", "room", "user", "text", "sent_at")
    search_fields = ("text", "room__id", "room__name", "user__username")
    readonly_fields = ("room", "user", "text", "sent_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Chat is written by members, in the room."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """A line is deleted, never rewritten."""
        return False

    def delete_model(self, request: HttpRequest, obj: ChatMessage) -> None:
        """As DELETE /api/rooms/{id}/chat/{message_id}: clients get `chat_deleted {id}`."""
        staff.delete_chat(request.user, obj.room_id, obj.pk)


@admin.register(PlaybackState)
class PlaybackStateAdmin(ReadOnly):
    """Playback state per room (read-only: changes go through the services)."""

    list_display = ("room", "movie", "position", "playing", "rate", "version")


@admin.register(Presence)
class PresenceAdmin(ReadOnly):
    """Open sockets, by node (read-only); also the staff live view of nodes and rooms."""

    list_display = ("connection_id", "room", "user", "node_id", "connected_at")
    list_filter = ("node_id",)
    search_fields = ("room__id", "user__username", "node_id")

    def get_urls(self) -> list[URLPattern]:
        """`live/` (the page) and `live.json` (what it polls), before the model's own."""
        return [
            path("live/", staff_live.live_page, name=staff_live.PAGE_URL_NAME),
            path("live.json", staff_live.live_json, name=staff_live.JSON_URL_NAME),
            *super().get_urls(),
        ]


# --- accounts -------------------------------------------------------------------------------

User = get_user_model()


class AccountAdmin(ThroughServices, UserAdmin):
    """Django's user admin, where deactivating (or deleting) an account also ends its tokens,
    sessions and sockets on every node."""

    actions = ("deactivate_users",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Saved as Django saves it; unticking `active` deactivates through the service."""
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            staff.deactivate_user(request.user, obj)

    @admin.action(description="Deactivate the selected users (tokens revoked, sockets closed)")
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Deactivate each selected active user."""
        users = list(queryset.filter(is_active=True))
        with transaction.atomic():  # all or none, as 'delete selected'
            for user in users:
                staff.deactivate_user(request.user, user)
        self.message_user(request, f"{len(users)} user(s) deactivated.")

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        """Its sockets are closed (4003) on every node, then the account goes."""
        staff.close_sockets_of(request.user, obj)
        super().delete_model(request, obj)


admin.site.unregister(User)
admin.site.register(User, AccountAdmin)
