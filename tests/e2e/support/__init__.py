"""What the browser end-to-end tests are built from; import it all from here.

`tests/e2e/conftest.py` turns these into fixtures (`media`, `media_server`, `synctv`,
`browser`, `new_page`, `drift_stats`); tests use the helpers directly:
`RoomObserver`, `drift`, `wait_for`, the `Api` calls (`synctv.api`), `sign_in_context`.
"""

from tests.e2e.support.api import Account, Api, sign_in_context, sign_in_page, unique_name
from tests.e2e.support.browser import (
    AUTOPLAY_ALLOWED,
    AUTOPLAY_NEEDS_GESTURE,
    PHONE_VIEWPORT,
    PageFactory,
    launch_chromium,
    open_html,
)
from tests.e2e.support.media import MediaServer, MediaSet, generate_media
from tests.e2e.support.nodes import RestartableNode
from tests.e2e.support.observer import (
    DriftRecorder,
    DriftStats,
    RoomObserver,
    drift,
    expected_position,
)
from tests.e2e.support.waiting import wait_for

__all__ = [
    "AUTOPLAY_ALLOWED",
    "AUTOPLAY_NEEDS_GESTURE",
    "PHONE_VIEWPORT",
    "Account",
    "Api",
    "DriftRecorder",
    "DriftStats",
    "MediaServer",
    "MediaSet",
    "PageFactory",
    "RestartableNode",
    "RoomObserver",
    "drift",
    "expected_position",
    "generate_media",
    "launch_chromium",
    "open_html",
    "sign_in_context",
    "sign_in_page",
    "unique_name",
    "wait_for",
]
