"""The admin page of the runtime connection limits: one row, blank fields keep the
configured defaults, and every node applies a saved change within seconds (cluster/limits.py).

Imported by rooms/apps.py (`ready`), so the page exists whichever admin module is loaded.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from rooms.models import ConnectionLimitOverrides
from rooms.services.staff import log_action

# Model field → key of `cluster.connection_limits` whose value a blank field keeps.
CONFIGURED_KEY = {
    "per_user": "per_user",
    "per_room": "per_room",
    "global_limit": "global_",
    "idle_timeout_secs": "idle_timeout_secs",
    "max_duration_secs": "max_duration_secs",
}


@admin.register(ConnectionLimitOverrides)
class ConnectionLimitOverridesAdmin(admin.ModelAdmin):
    """The one row of runtime limits: edited, never added or deleted."""

    fields = tuple(CONFIGURED_KEY)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """The row exists (made on the first visit): nothing to add."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Blank fields are the way back to the defaults."""
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Save the row, and log who changed which limits to what (None: the default)."""
        super().save_model(request, obj, form, change)
        changes = {name: form.cleaned_data.get(name) for name in form.changed_data}
        log_action("changed connection limits", request.user, changes=changes)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list of one row is that row's page."""
        row = ConnectionLimitOverrides.load()
        return HttpResponseRedirect(
            reverse("admin:rooms_connectionlimitoverrides_change", args=[row.pk])
        )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        """Each field says which default a blank keeps (this node's configuration)."""
        form = super().get_form(request, obj, change, **kwargs)
        configured = settings.SYNCTV.cluster.connection_limits
        for name, key in CONFIGURED_KEY.items():
            field = form.base_fields[name]
            field.help_text = f"{field.help_text} ({getattr(configured, key)})"
        return form
