"""Configuration (SPEC §2): defaults, YAML file, SYNCTV__ overrides and one-line errors."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from synctv_project.config import (
    CONFIG_PATH_VARIABLE,
    ENV_PREFIX,
    ConfigError,
    SyncTVConfig,
    load_config,
    resolve_node_id,
    resolve_secret_key,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No SYNCTV variables and a working directory without config.yaml."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX) or name == CONFIG_PATH_VARIABLE:
            monkeypatch.delenv(name)
    monkeypatch.delenv("NODE_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def yaml_file(clean_env, tmp_path):
    """Write a YAML file and point SYNCTV_CONFIG at it."""

    def write(text: str) -> Path:
        path = tmp_path / "settings" / "synctv.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        clean_env.setenv(CONFIG_PATH_VARIABLE, str(path))
        return path

    return write


def config_error(**env: str) -> str:
    """The ConfigError message that load_config raises for these variables."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises(ConfigError) as raised:
            load_config()
    return str(raised.value)


def assert_one_line_naming(message: str, *parts: str) -> None:
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# Defaults


SPEC_DEFAULTS = [
    ("server.host", "0.0.0.0"),
    ("server.port", 8080),
    ("server.secret_key", ""),
    ("server.allowed_hosts", ["*"]),
    ("server.allowed_origins", []),
    ("server.debug", False),
    ("database.url", "sqlite:///synctv.sqlite3"),
    ("redis.url", ""),
    ("redis.key_prefix", "synctv:"),
    ("redis.cluster_mode", False),
    ("cluster.node_id", ""),
    ("cluster.dedup_window_secs", 60),
    ("cluster.connection_limits.per_user", 10),
    ("cluster.connection_limits.per_room", 1000),
    ("cluster.connection_limits.global_", 100000),
    ("cluster.connection_limits.idle_timeout_secs", 1800),
    ("cluster.connection_limits.max_duration_secs", 86400),
    ("cluster.shutdown_grace_secs", 30),
    ("logging.level", "INFO"),
    ("logging.format", "json"),
    ("metrics.per_room_labels", True),
    ("metrics.per_user_labels", True),
]


def lookup(config: SyncTVConfig, dotted: str):
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(("key", "default"), SPEC_DEFAULTS)
def test_every_key_has_its_spec_default(clean_env, key, default):
    assert lookup(load_config(), key) == default


def test_without_redis_url_the_node_is_single_node(clean_env):
    assert load_config().cluster_mode is False


# YAML file


def test_yaml_file_named_by_synctv_config_is_read(yaml_file):
    yaml_file("server: {port: 9001}\nredis: {key_prefix: 'tv:'}\n")

    config = load_config()

    assert config.server.port == 9001
    assert config.redis.key_prefix == "tv:"


def test_config_yaml_in_working_directory_is_read_by_default(clean_env, tmp_path):
    (tmp_path / "config.yaml").write_text("logging: {format: console}\n", encoding="utf-8")

    assert load_config().logging.format == "console"


def test_yaml_sets_nested_connection_limits(yaml_file):
    yaml_file("cluster:\n  connection_limits: {per_user: 3, global: 500}\n")

    limits = load_config().cluster.connection_limits

    assert (limits.per_user, limits.global_) == (3, 500)


def test_empty_yaml_file_means_all_defaults(yaml_file):
    yaml_file("")

    assert load_config().server.port == 8080


# Environment overrides


def test_env_overrides_a_top_level_section_key(clean_env):
    clean_env.setenv("SYNCTV__REDIS__URL", "redis://cache:6379/0")

    config = load_config()

    assert config.redis.url == "redis://cache:6379/0"
    assert config.cluster_mode is True


def test_env_overrides_per_user_connection_limit(clean_env):
    clean_env.setenv("SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER", "4")

    assert load_config().cluster.connection_limits.per_user == 4


def test_env_overrides_global_connection_limit(clean_env):
    clean_env.setenv("SYNCTV__CLUSTER__CONNECTION_LIMITS__GLOBAL", "77")

    assert load_config().cluster.connection_limits.global_ == 77


def test_env_beats_yaml_key_by_key(yaml_file, clean_env):
    yaml_file(
        "server: {port: 9001, host: 127.0.0.1}\ncluster:\n  connection_limits: {per_user: 3, per_room: 50}\n"
    )
    clean_env.setenv("SYNCTV__SERVER__PORT", "9002")
    clean_env.setenv("SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER", "7")

    config = load_config()

    assert (config.server.port, config.server.host) == (9002, "127.0.0.1")
    limits = config.cluster.connection_limits
    assert (limits.per_user, limits.per_room) == (7, 50)


def test_env_list_value_is_json(clean_env):
    clean_env.setenv("SYNCTV__SERVER__ALLOWED_ORIGINS", '["https://watch.example"]')

    assert load_config().server.allowed_origins == ["https://watch.example"]


# Bad values: one line naming the key, the value and what was expected


def test_word_where_a_number_belongs_is_refused(clean_env):
    message = config_error(SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER="abc")

    assert_one_line_naming(message, "cluster.connection_limits.per_user", "'abc'", "integer")


def test_negative_limit_is_refused(clean_env):
    message = config_error(SYNCTV__CLUSTER__CONNECTION_LIMITS__GLOBAL="-5")

    assert_one_line_naming(message, "cluster.connection_limits.global", "-5", "greater than")


def test_unknown_limit_scope_is_refused_with_the_choices(clean_env):
    message = config_error(SYNCTV__CLUSTER__CONNECTION_LIMITS__SCOPE="planet")

    assert_one_line_naming(
        message, "cluster.connection_limits.scope", "'planet'", "'node' or 'cluster'"
    )


def test_limit_scope_is_node_unless_set(clean_env):
    assert load_config().cluster.connection_limits.scope == "node"


def test_zero_lease_is_refused(clean_env):
    message = config_error(SYNCTV__CLUSTER__CONNECTION_LIMITS__LEASE_SECS="0")

    assert_one_line_naming(message, "cluster.connection_limits.lease_secs", "0", "greater than")


def test_bad_value_in_yaml_is_refused(yaml_file):
    yaml_file("cluster:\n  connection_limits: {per_room: lots}\n")

    message = config_error()

    assert_one_line_naming(message, "cluster.connection_limits.per_room", "'lots'", "integer")


def test_unknown_choice_is_refused_with_the_choices(clean_env):
    message = config_error(SYNCTV__LOGGING__FORMAT="xml")

    assert_one_line_naming(message, "logging.format", "'xml'", "json", "console")


def test_unknown_key_in_yaml_is_refused(yaml_file):
    yaml_file("server: {prot: 9000}\n")

    message = config_error()

    assert_one_line_naming(message, "server.prot", "9000", "unknown key", "port")


def test_unknown_section_in_yaml_is_refused(yaml_file):
    yaml_file("bogus: {a: 1}\n")

    message = config_error()

    assert_one_line_naming(message, "bogus", "unknown key", "server", "cluster")


def test_unknown_synctv_variable_is_refused(clean_env):
    message = config_error(SYNCTV__SERVER__NOPE="1")

    assert_one_line_naming(message, "SYNCTV__SERVER__NOPE", "'1'", "unknown key", "port")


def test_variable_below_a_plain_key_is_refused(clean_env):
    message = config_error(SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER__MAX="3")

    assert_one_line_naming(
        message,
        "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER__MAX",
        "'3'",
        "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER",
    )


def test_bad_yaml_syntax_is_refused(yaml_file):
    path = yaml_file("server: {port: [1\n")

    message = config_error()

    assert_one_line_naming(message, str(path), "YAML")


def test_yaml_that_is_not_a_mapping_is_refused(yaml_file):
    path = yaml_file("- server\n- redis\n")

    message = config_error()

    assert_one_line_naming(message, str(path), "mapping", "list")


def test_synctv_config_pointing_nowhere_is_refused(clean_env, tmp_path):
    missing = tmp_path / "missing.yaml"

    message = config_error(SYNCTV_CONFIG=str(missing))

    assert_one_line_naming(message, CONFIG_PATH_VARIABLE, str(missing), "no such file")


def test_manage_py_stops_at_start_with_one_line_naming_the_bad_key(tmp_path):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(ENV_PREFIX)
        and name not in (CONFIG_PATH_VARIABLE, "DJANGO_SETTINGS_MODULE")
    }
    env["SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER"] = "abc"

    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "manage.py"), "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cluster.connection_limits.per_user" in lines[0]
    assert "'abc'" in lines[0]


# Node id and secret key


def test_configured_node_id_is_used_as_is(clean_env):
    clean_env.setenv("SYNCTV__CLUSTER__NODE_ID", "node-a")
    clean_env.setenv("NODE_NAME", "pod-7")

    assert resolve_node_id(load_config()) == "node-a"


def test_node_id_is_node_name_plus_a_short_suffix(clean_env):
    clean_env.setenv("NODE_NAME", "pod-7")
    config = load_config()

    first, second = resolve_node_id(config), resolve_node_id(config)

    assert re.fullmatch(r"pod-7-[0-9a-f]{6}", first)
    assert first != second


def test_node_id_falls_back_to_the_hostname(clean_env):
    import socket

    assert resolve_node_id(load_config()).startswith(socket.gethostname() + "-")


def test_configured_secret_key_is_used(clean_env):
    clean_env.setenv("SYNCTV__SERVER__SECRET_KEY", "shared-secret")

    assert resolve_secret_key(load_config()) == "shared-secret"


def test_single_node_generates_secret_once_beside_the_sqlite_db(clean_env, tmp_path):
    database = tmp_path / "data" / "synctv.sqlite3"
    clean_env.setenv("SYNCTV__DATABASE__URL", f"sqlite:///{database}")
    config = load_config()

    first = resolve_secret_key(config)
    second = resolve_secret_key(config)

    assert len(first) >= 50
    assert second == first
    assert (database.parent / "synctv.secret").read_text().strip() == first


def test_cluster_mode_without_secret_key_is_refused(clean_env):
    clean_env.setenv("SYNCTV__REDIS__URL", "redis://cache:6379/0")

    with pytest.raises(ConfigError) as raised:
        resolve_secret_key(load_config())

    assert_one_line_naming(str(raised.value), "server.secret_key", "cluster")
