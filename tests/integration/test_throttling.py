"""Throttling of sign-up, login and guest creation (docs/api.md): per client address, and
per username for login; a refused try is 429 `rate_limited` with Retry-After, and another
address or username is not affected."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from rooms.codes import ErrorCode
from synctv_project.config import ConfigError, ThrottleConfig, load_config
from tests.support.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

PASSWORD = "correct-horse-9"  # what make_user signs up with
GENEROUS = "1000/min"


@pytest.fixture(autouse=True)
def fresh_counters():
    """Each test counts from zero (the counters live in Django's cache)."""
    cache.clear()
    yield
    cache.clear()


def limits(settings, **rates: str) -> None:
    """Turn throttling on with these rates; the others generous."""
    base = dict.fromkeys(ThrottleConfig.model_fields.keys() - {"enabled"}, GENEROUS)
    settings.SYNCTV_THROTTLE_RATES = {**base, **rates}


def login(username: str, address: str, password: str = "wrong-password", **headers: str):
    return Client(REMOTE_ADDR=address).post(
        "/api/auth/login",
        {"username": username, "password": password},
        content_type="application/json",
        **headers,
    )


def assert_rate_limited(response) -> int:
    """A 429 in the SPEC's error shape; the Retry-After seconds."""
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == ErrorCode.RATE_LIMITED
    assert response.json()["error"]["message"]
    return int(response["Retry-After"])


def test_login_is_limited_per_address_and_another_address_is_not(settings):
    make_user("alice")
    limits(settings, login_per_ip="3/min")
    for _ in range(3):
        assert login("alice", "10.0.0.1").status_code == 401

    retry_after = assert_rate_limited(login("alice", "10.0.0.1"))

    assert 1 <= retry_after <= 60
    assert login("alice", "10.0.0.2").status_code == 401


def test_a_throttled_address_is_refused_even_with_the_right_password(settings):
    make_user("alice")
    limits(settings, login_per_ip="2/min")
    login("alice", "10.0.0.1")
    login("alice", "10.0.0.1")

    assert_rate_limited(login("alice", "10.0.0.1", password=PASSWORD))


def test_login_is_limited_per_username_across_addresses(settings):
    make_user("alice")
    make_user("bob")
    limits(settings, login_per_username="2/min")
    assert login("alice", "10.0.1.1").status_code == 401
    assert login("ALICE", "10.0.1.2").status_code == 401

    assert_rate_limited(login("alice", "10.0.1.3"))
    assert login("bob", "10.0.1.3", password=PASSWORD).status_code == 200


def test_signup_is_limited_per_address(settings):
    limits(settings, signup_per_ip="2/min")

    def signup(name: str, address: str):
        return Client(REMOTE_ADDR=address).post(
            "/api/auth/signup",
            {"username": name, "password": PASSWORD},
            content_type="application/json",
        )

    assert signup("first", "10.0.2.1").status_code == 201
    assert signup("second", "10.0.2.1").status_code == 201

    assert 1 <= assert_rate_limited(signup("third", "10.0.2.1")) <= 60
    assert signup("fourth", "10.0.2.2").status_code == 201


def test_guest_creation_is_limited_per_address(settings):
    limits(settings, guest_per_ip="2/min")

    def guest(address: str):
        return Client(REMOTE_ADDR=address).post(
            "/api/auth/guest", {"name": "Visitor"}, content_type="application/json"
        )

    assert guest("10.0.3.1").status_code == 200
    assert guest("10.0.3.1").status_code == 200

    assert_rate_limited(guest("10.0.3.1"))
    assert guest("10.0.3.2").status_code == 200


def test_a_forged_forwarded_for_header_does_not_escape_the_limit(settings):
    make_user("alice")
    limits(settings, login_per_ip="2/min")
    login("alice", "10.0.4.1", HTTP_X_FORWARDED_FOR="1.1.1.1")
    login("alice", "10.0.4.1", HTTP_X_FORWARDED_FOR="2.2.2.2")

    assert_rate_limited(login("alice", "10.0.4.1", HTTP_X_FORWARDED_FOR="3.3.3.3"))


def test_behind_a_configured_proxy_each_forwarded_client_counts_alone(settings):
    make_user("alice")
    settings.NINJA_NUM_PROXIES = 1
    limits(settings, login_per_ip="2/min")
    proxy = "10.0.5.1"
    login("alice", proxy, HTTP_X_FORWARDED_FOR="198.51.100.7")
    login("alice", proxy, HTTP_X_FORWARDED_FOR="198.51.100.7")

    assert_rate_limited(login("alice", proxy, HTTP_X_FORWARDED_FOR="198.51.100.7"))
    assert login("alice", proxy, HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 401


def test_no_rates_means_no_limit(settings):
    settings.SYNCTV_THROTTLE_RATES = {}

    answers = [login("nobody", "10.0.6.1").status_code for _ in range(30)]

    assert set(answers) == {401}


def test_the_defaults_are_the_documented_ones():
    defaults = ThrottleConfig()

    assert defaults.enabled is True
    assert defaults.login_per_ip == "10/min"
    assert defaults.login_per_username == "5/min"
    assert defaults.signup_per_ip == "5/min"
    assert defaults.guest_per_ip == "20/min"


def test_a_bad_rate_stops_the_start_naming_the_key(monkeypatch):
    monkeypatch.setenv("SYNCTV__AUTH__THROTTLE__LOGIN_PER_IP", "ten a minute")

    with pytest.raises(ConfigError, match="auth.throttle.login_per_ip"):
        load_config()
