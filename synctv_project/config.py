"""SyncTV configuration: an optional YAML file, then `SYNCTV__SECTION__KEY` environment overrides.

The whole configuration is parsed once, at start, into `SyncTVConfig`; settings.py is built
from it and nothing else reads the environment. A bad value stops start-up with one line
naming the key, the value and what was expected (`ConfigError`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from synctv_project.redaction import redacted_repr

ENV_PREFIX = "SYNCTV__"
ENV_DELIMITER = "__"
CONFIG_PATH_VARIABLE = "SYNCTV_CONFIG"
DEFAULT_CONFIG_FILE = "config.yaml"
# A DNS name: dot-separated labels of letters, digits and inner hyphens.
HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?")

ProbeDestination = ipaddress.IPv4Network | ipaddress.IPv6Network | str


class ConfigError(Exception):
    """A configuration value that SyncTV refuses; the message is one line for operators."""


class Section(BaseModel):
    """A configuration section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerConfig(Section):
    """`server:` — where the node listens and which hosts and origins it accepts."""

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    secret_key: str = ""
    allowed_hosts: list[str] = ["*"]
    allowed_origins: list[str] = []
    debug: bool = False


class DatabaseConfig(Section):
    """`database:` — the source of truth; SQLite by default, PostgreSQL in production."""

    url: str = "sqlite:///synctv.sqlite3"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
            raise ValueError("expected a URL starting sqlite:/// or postgresql://")
        return value


class RedisConfig(Section):
    """`redis:` — empty url means single-node mode."""

    url: str = ""
    key_prefix: str = "synctv:"
    cluster_mode: bool = False

    @field_validator("url")
    @classmethod
    def _known_redis_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if value and scheme not in {"redis", "rediss", "unix", "redis+sentinel"}:
            raise ValueError(
                "expected empty (single-node), redis://host:6379/0 or "
                "redis+sentinel://host:26379/mastername"
            )
        return value


class ConnectionLimits(Section):
    """`cluster.connection_limits:` — limits on WebSocket connections, the defaults of the
    admin's runtime limits (docs/cluster.md, "Connection limits")."""

    per_user: int = Field(10, ge=1)
    per_room: int = Field(1000, ge=1)
    global_: int = Field(100000, ge=1, alias="global")
    idle_timeout_secs: int = Field(1800, ge=1)
    max_duration_secs: int = Field(86400, ge=1)
    # Where per_user, per_room and global are counted: each node alone, or the whole cluster
    # through Redis (cluster mode only). Not in SPEC §2; docs/cluster.md.
    scope: Literal["node", "cluster"] = "node"
    # Scope `cluster`: how long a node's entry of a socket lives in Redis unless renewed
    # (the owning node renews it every third of that): a dead node's sockets free their
    # slots within this.
    lease_secs: int = Field(30, ge=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)


class ClusterConfig(Section):
    """`cluster:` — node identity, dedup window, limits and shutdown grace."""

    node_id: str = ""
    dedup_window_secs: int = Field(60, ge=1)
    connection_limits: ConnectionLimits = ConnectionLimits()
    shutdown_grace_secs: int = Field(30, ge=0)
    # Each room's Redis Stream of events (not in SPEC §2; docs/cluster.md): how many events
    # and how many seconds of them a node cut off from Redis can read back afterwards.
    event_stream_max_events: int = Field(1000, ge=10)
    event_stream_max_age_secs: int = Field(600, ge=10)


class LoggingConfig(Section):
    """`logging:` — level and line format."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["json", "console"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class MetricsConfig(Section):
    """`metrics:` — whether the high-cardinality per-room and per-user series exist."""

    per_room_labels: bool = True
    per_user_labels: bool = True


THROTTLE_RATE = re.compile(r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)")


class ThrottleConfig(Section):
    """`auth.throttle:` — tries per client address (and per username for login) on the
    sign-in endpoints, as `N/s`, `N/min`, `N/hour` or `N/day` (docs/api.md)."""

    enabled: bool = True
    login_per_ip: str = "10/min"
    login_per_username: str = "5/min"
    signup_per_ip: str = "5/min"
    guest_per_ip: str = "20/min"
    password_per_ip: str = "10/min"

    @field_validator(
        "login_per_ip", "login_per_username", "signup_per_ip", "guest_per_ip", "password_per_ip"
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        if not THROTTLE_RATE.fullmatch(value):
            raise ValueError("expected a rate such as 10/min (per s, sec, m, min, h, hour, d, day)")
        return value


class AuthConfig(Section):
    """`auth:` — bearer token lifetime, sign-in throttling, and how many reverse proxies
    stand in front of the node (not in SPEC §2; docs/api.md)."""

    token_lifetime_days: int = Field(30, ge=1, le=3650)
    # X-Forwarded-For is believed only this many hops deep; 0: the peer address is the client.
    num_proxies: int = Field(0, ge=0, le=10)
    throttle: ThrottleConfig = ThrottleConfig()


class WebSocketConfig(Section):
    """`websocket:` — per-connection flood protection (not in SPEC §2; documented in docs/)."""

    rate_limit_per_sec: float = Field(20.0, gt=0)
    rate_limit_burst: int = Field(40, ge=1)
    abuse_max_errors: int = Field(50, ge=1)
    abuse_window_secs: int = Field(60, ge=1)
    send_queue_capacity: int = Field(200, ge=1)
    # The fan-out fast lane (docs/performance.md); false sends every frame through Channels.
    fast_lane: bool = True
    # A socket's outgoing bytes: its transport buffers up to transport_buffer_bytes (the high
    # water mark: beyond it the socket's own backlog holds frames until the transport has
    # drained); a backlog over send_backlog_bytes closes the socket with 1013 (slow client).
    transport_buffer_bytes: int = Field(64 << 10, ge=1024)
    send_backlog_bytes: int = Field(1 << 20, ge=1024)
    chat_history: int = Field(50, ge=0, le=500)


def parse_probe_destination(entry: str) -> ProbeDestination:
    """An allow-list entry: a network (CIDR or one address) or a lower-case host name."""
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        pass
    name = entry.strip().lower()
    if len(name) <= 253 and HOST_NAME.fullmatch(name) and not name.replace(".", "").isdigit():
        return name.rstrip(".")
    raise ValueError(
        f"expected CIDR networks such as 192.168.1.0/24 or host names such as media.lan, "
        f"got {entry!r}"
    )


class JobsConfig(Section):
    """`jobs:` — background jobs (docs/jobs.md; not in SPEC §2)."""

    # Non-public destinations the movie probe may reach anyway (docs/security.md).
    probe_allowed_networks: list[str] = []

    @field_validator("probe_allowed_networks")
    @classmethod
    def _destinations(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_probe_destination(entry)
        return value


class SecurityConfig(Section):
    """`security:` — HTTP hardening that depends on the deployment (docs/security.md)."""

    # True only when every request reaches the node through a TLS proxy that sets
    # X-Forwarded-Proto itself (overwriting what a client sent), and the node's port is
    # reachable by that proxy alone: then a request with `X-Forwarded-Proto: https` is TLS.
    behind_tls_proxy: bool = False


class SyncTVConfig(BaseSettings):
    """The whole configuration of one node."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        case_sensitive=False,
        validate_default=True,
    )

    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    redis: RedisConfig = RedisConfig()
    cluster: ClusterConfig = ClusterConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    auth: AuthConfig = AuthConfig()
    websocket: WebSocketConfig = WebSocketConfig()
    jobs: JobsConfig = JobsConfig()
    security: SecurityConfig = SecurityConfig()

    @property
    def cluster_mode(self) -> bool:
        """True when a Redis URL is set: events cross nodes through Redis."""
        return bool(self.redis.url)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment overrides the YAML file, key by key."""
        yaml_file = _yaml_path(os.environ)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


def _yaml_path(environ: Any) -> Path | None:
    explicit = environ.get(CONFIG_PATH_VARIABLE)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(
                f"{CONFIG_PATH_VARIABLE}={explicit}: no such file; expected the path of a YAML file"
            )
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _keys(model: Any) -> dict[str, Any]:
    """A section's keys as written in YAML and the environment (`global`, not `global_`)."""
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _expected_keys(path: tuple[Any, ...]) -> str:
    """`expected one of ...`: the keys the section at `path` has, for an unknown-key error."""
    model: Any = SyncTVConfig
    for part in path:
        info = _keys(model).get(str(part))
        if info is None or not _is_section(info.annotation):
            return "expected a known key"
        model = info.annotation
    return "expected one of " + ", ".join(_keys(model))


def _check_env_keys(environ: dict[str, str]) -> None:
    """Refuse `SYNCTV__...` variables that name no key (pydantic-settings would ignore them)."""
    for name, raw in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        value = redacted_repr(raw)
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        model: Any = SyncTVConfig
        for depth, part in enumerate(parts):
            fields = _keys(model)
            key = ".".join(parts[: depth + 1])
            if part not in fields:
                expected = _expected_keys(tuple(parts[:depth]))
                raise ConfigError(f"{name}={value}: unknown key {key!r}; {expected}")
            annotation = fields[part].annotation
            if depth < len(parts) - 1 and not _is_section(annotation):
                variable = ENV_PREFIX + ENV_DELIMITER.join(parts[: depth + 1]).upper()
                raise ConfigError(f"{name}={value}: {key!r} has no sub-keys; expected {variable}")
            model = annotation


def _check_yaml(path: Path | None) -> None:
    """Give a bad YAML file (syntax, or not a mapping) a one-line error."""
    if path is None:
        return
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not a valid YAML file: {detail}") from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        value = redacted_repr(item.get("input"))
        if item["type"] == "extra_forbidden":
            expected = _expected_keys(tuple(item["loc"][:-1]))
            problems.append(f"{key} = {value!r}: unknown key; {expected}")
            continue
        expected = item["msg"].removeprefix("Value error, ")
        problems.append(f"{key} = {value!r}: {expected}")
    return "invalid configuration: " + "; ".join(problems)


def load_config() -> SyncTVConfig:
    """Read YAML + environment into a validated config, or raise ConfigError (one line)."""
    _check_env_keys(dict(os.environ))
    _check_yaml(_yaml_path(os.environ))
    try:
        return SyncTVConfig()
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except SettingsError as exc:  # a list or mapping variable that is not JSON
        raise ConfigError(
            f"invalid configuration: {exc}: expected JSON for a list or mapping, "
            """e.g. SYNCTV__JOBS__PROBE_ALLOWED_NETWORKS='["192.168.1.0/24"]'"""
        ) from None


def resolve_node_id(config: SyncTVConfig) -> str:
    """`cluster.node_id`, else $NODE_NAME or the hostname plus a short random suffix."""
    if config.cluster.node_id:
        return config.cluster.node_id
    base = os.environ.get("NODE_NAME") or socket.gethostname() or "node"
    return f"{base}-{secrets.token_hex(3)}"


def sqlite_path(config: SyncTVConfig) -> Path | None:
    """The SQLite file of the embedded database, or None when the database is PostgreSQL."""
    url = config.database.url
    if not url.startswith("sqlite://"):
        return None
    return Path(url.removeprefix("sqlite:///") or "synctv.sqlite3")


def resolve_secret_key(config: SyncTVConfig) -> str:
    """The configured secret, or (single-node only) one generated once and kept in a file."""
    if config.server.secret_key:
        return config.server.secret_key
    if config.cluster_mode:
        raise ConfigError(
            "server.secret_key = '': expected a secret shared by every node "
            "(cluster mode refuses to start without one)"
        )
    database = sqlite_path(config)
    folder = database.parent if database is not None else Path(".")
    key_file = folder / "synctv.secret"
    if key_file.is_file():
        return key_file.read_text(encoding="utf-8").strip()
    folder.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    return key
