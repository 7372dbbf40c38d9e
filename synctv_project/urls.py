"""HTTP routes: pages, the JSON API, health and metrics, the admin."""

from django.contrib import admin
from django.urls import include, path, re_path

from monitoring.health import health, nodes_view, ready
from rooms.api import api, not_found_view
from rooms.pages import lobby, room_page

urlpatterns = [
    path("", lobby, name="lobby"),
    path("r/<str:room_id>", room_page, name="room"),
    path("api/", api.urls),
    re_path(r"^api/(?P<path>.*)$", not_found_view),
    path("health", health),
    path("ready", ready),
    path("", include("django_prometheus.urls")),
    path("admin/nodes/", admin.site.admin_view(nodes_view), name="admin-nodes"),
    path("admin/", admin.site.urls),
]
