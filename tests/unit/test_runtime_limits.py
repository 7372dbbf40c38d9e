"""Runtime connection limits: staff's overrides on top of the configured defaults."""

from cluster.limits import RuntimeLimits
from tests.support.ws import override_connection_limits


def test_without_overrides_the_configured_limits_apply(settings):
    override_connection_limits(settings, per_user=4, idle_timeout_secs=90)

    current = RuntimeLimits().current()

    assert (current.per_user, current.idle_timeout_secs, current.global_) == (4, 90, 100000)


def test_an_override_replaces_only_its_own_limit(settings):
    limits = RuntimeLimits()

    limits.apply({"per_room": 5, "per_user": None})

    current = limits.current()
    assert (current.per_room, current.per_user) == (5, 10)


def test_a_config_change_still_shows_through_blank_overrides(settings):
    limits = RuntimeLimits()
    limits.apply({"per_room": 5})

    override_connection_limits(settings, per_user=2)

    assert (limits.current().per_room, limits.current().per_user) == (5, 2)


def test_apply_says_whether_open_sockets_need_new_deadlines(settings):
    limits = RuntimeLimits()

    assert limits.apply({"per_user": 3}) is False
    assert limits.apply({"per_user": 3, "idle_timeout_secs": 60}) is True
    assert limits.apply({"per_user": 3, "idle_timeout_secs": 60}) is False
    assert limits.apply({"per_user": 3, "max_duration_secs": 600}) is True
