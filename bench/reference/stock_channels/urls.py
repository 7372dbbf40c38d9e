"""No HTTP views: the reference serves only its room sockets."""

urlpatterns: list[object] = []
