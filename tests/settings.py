"""Settings for the test suite: the real configuration path, pointed at the real PostgreSQL.

Environment defaults are set before the configuration is read, the same way an operator
would set them; an explicit SYNCTV__... variable in the environment still wins.
"""

import os

os.environ.setdefault("SYNCTV__DATABASE__URL", "postgresql://postgres@127.0.0.1:5432/synctv")
os.environ.setdefault("SYNCTV__SERVER__SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("SYNCTV__LOGGING__FORMAT", "console")
os.environ.setdefault("SYNCTV__LOGGING__LEVEL", "WARNING")
# The suite signs in far more often than people do, here and in the nodes it starts (they
# inherit this environment); tests/integration/test_throttling.py turns the limits back on.
os.environ.setdefault("SYNCTV__AUTH__THROTTLE__ENABLED", "false")

from synctv_project.settings import *  # noqa: E402, F403

# A fast hasher: real hashing costs ~0.3 s per account and buys the tests nothing.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
