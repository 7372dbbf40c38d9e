"""/ready shows node addresses and pids to staff only; passwords never reach a log line.

The /ready test runs a real cluster-mode node on a real Redis; the log tests run records
through the handler, filters and formatters that settings.LOGGING builds.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
import time
import uuid

import httpx
import pytest
from django.conf import settings
from django.test import Client
from django.utils.module_loading import import_string

from synctv_project.config import ConfigError, load_config
from synctv_project.redaction import redact_secrets
from tests.support.factories import make_user
from tests.support.redis_servers import redis_server  # noqa: F401
from tests.support.servers import serve_node  # noqa: F401

PASSWORD = "hunter2-not-for-logs"
REGISTRY_DEADLINE = 15.0  # nodes beat every 5 s


# --- /ready ----------------------------------------------------------------------------------


def session_of(user) -> str:
    """A signed-in session of `user` in the database, as a login would leave it: its key."""
    browser = Client()
    browser.force_login(user)
    return browser.cookies[settings.SESSION_COOKIE_NAME].value


def nodes_seen(http: httpx.Client) -> list[dict]:
    deadline = time.monotonic() + REGISTRY_DEADLINE
    while True:
        nodes = http.get("/ready").json().get("nodes", [])
        if nodes:
            return nodes
        assert time.monotonic() < deadline, "the node never listed itself in /ready"
        time.sleep(0.2)


@pytest.mark.serve
@pytest.mark.timeout(90)
def test_ready_shows_node_addresses_and_pids_to_staff_only(
    serve_node,  # noqa: F811
    redis_server,  # noqa: F811
    django_user_model,
):
    operator = make_user("operator").user
    django_user_model.objects.filter(pk=operator.pk).update(is_staff=True)
    operator.refresh_from_db()
    viewer_user = make_user("viewer").user
    node = serve_node(
        env={
            "SYNCTV__REDIS__URL": redis_server.url,
            "SYNCTV__REDIS__KEY_PREFIX": f"ready-{uuid.uuid4().hex[:8]}:",
        }
    )

    with (
        httpx.Client(base_url=node.base_url, timeout=5) as anonymous,
        httpx.Client(base_url=node.base_url, timeout=5) as viewer,
        httpx.Client(base_url=node.base_url, timeout=5) as staff,
    ):
        for client, user in ((viewer, viewer_user), (staff, operator)):
            client.cookies.set(settings.SESSION_COOKIE_NAME, session_of(user))
        nodes_seen(anonymous)
        seen = {
            who: nodes_seen(client)
            for who, client in (("anonymous", anonymous), ("viewer", viewer), ("staff", staff))
        }

    [staff_entry] = seen["staff"]
    assert staff_entry["node_id"] == node.node_id
    assert staff_entry["pid"] == node.process.pid
    assert staff_entry["address"].endswith(f":{node.port}")
    for who in ("anonymous", "viewer"):
        [entry] = seen[who]
        assert entry["node_id"] == node.node_id and entry["alive"] is True
        assert "address" not in entry and "pid" not in entry, who


# --- logs ------------------------------------------------------------------------------------


@pytest.fixture(params=["json", "console"])
def log_output(request):
    """A logger wired as settings.LOGGING wires the root logger, writing to a buffer."""
    stream = io.StringIO()
    config = json.loads(json.dumps(settings.LOGGING))
    config["handlers"]["stderr"]["formatter"] = request.param
    config["handlers"]["stderr"]["stream"] = stream
    config["root"] = {"handlers": []}
    config["loggers"] = {"synctv.redaction-test": {"handlers": ["stderr"], "level": "DEBUG"}}
    logging.config.dictConfig(config)
    logger = logging.getLogger("synctv.redaction-test")
    logger.propagate = False
    yield logger, stream
    logging.config.dictConfig(settings.LOGGING)


def test_log_lines_never_carry_a_url_password(log_output):
    logger, stream = log_output
    redis_url = f"redis://:{PASSWORD}@redis.internal:6379/0"
    database_url = f"postgresql://synctv:{PASSWORD}@db.internal:5432/synctv"

    logger.warning("connecting to %s", redis_url)
    logger.warning(f"database is {database_url}", extra={"target": database_url})
    try:
        raise ConnectionError(f"cannot reach {redis_url} (password={PASSWORD})")
    except ConnectionError:
        logger.exception("Redis unreachable")
    path = f"/ws/rooms/r1/?token={PASSWORD}"
    logger.info("socket opened on %s", path, extra={"path": path})

    output = stream.getvalue()
    assert PASSWORD not in output
    assert "redis://:****@redis.internal:6379/0" in output
    assert "postgresql://synctv:****@db.internal" in output
    assert "ConnectionError" in output  # the traceback is kept, redacted
    assert "token=****" in output


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:****@host:6379/0"),
        ("rediss://user:s3cret@host", "rediss://user:****@host"),
        ("redis+sentinel://:s3cret@s1:26379/m", "redis+sentinel://:****@s1:26379/m"),
        ("host=db user=u password=s3cret", "host=db user=u password=****"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("https://example.com/a:b@c", "https://example.com/a:b@c"),
    ],
)
def test_redaction_masks_passwords_and_keeps_the_rest(text, shown):
    assert redact_secrets(text) == shown


def test_a_refused_url_in_the_configuration_is_shown_without_its_password(monkeypatch):
    monkeypatch.setenv("SYNCTV__DATABASE__URL", f"mysql://synctv:{PASSWORD}@db/synctv")

    with pytest.raises(ConfigError) as error:
        load_config()

    assert PASSWORD not in str(error.value)
    assert "mysql://synctv:****@db/synctv" in str(error.value)


def test_the_error_page_masks_url_passwords_in_settings_and_frame_variables(settings, rf):
    redis_url = f"redis://:{PASSWORD}@redis.internal:6379/0"
    config = settings.SYNCTV
    settings.SYNCTV = config.model_copy(
        update={"redis": config.redis.model_copy(update={"url": redis_url})}
    )
    settings.SYNCTV_EXTRA_BACKEND = {"CONFIG": {"redis_url": redis_url}}  # a nested setting
    database_url = f"postgresql://synctv:{PASSWORD}@db.internal/synctv"

    try:
        raise ConnectionError(f"cannot reach the database at {database_url}")
    except ConnectionError:
        reporter = import_string(settings.DEFAULT_EXCEPTION_REPORTER)(
            rf.get("/r/abc?token=" + PASSWORD), *sys.exc_info()
        )
        page = reporter.get_traceback_html()
        text = reporter.get_traceback_text()

    assert database_url in locals().values()  # the frame variable the page shows
    for report in (page, text):
        assert PASSWORD not in report
        assert "postgresql://synctv:****@db.internal/synctv" in report
    assert "redis://:****@redis.internal:6379/0" in page  # settings are on the HTML page
