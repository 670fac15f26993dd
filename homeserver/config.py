"""Configuration: one YAML file, read once into frozen dataclasses and passed in.

Every option is documented with its default and an example in ``homeserver/sample_config.yaml``
(what ``homeserver generate-config`` writes) and ``docs/reference/configuration.md``. Loading
checks the whole file and reports each problem as ``<file>: <key>: <problem>``: unknown keys,
wrong types, values out of range, unreadable TLS files and bad database URLs.

Nothing below ``homeserver.app`` reads files or the environment: the composition root loads the
:class:`Config` and hands each service its section.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid.

    Attributes:
        problems: one ``"<key>: <problem>"`` line per problem found.
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class RegistrationPolicy(enum.StrEnum):
    """Who may create an account."""

    CLOSED = "closed"  # only the operator (CLI / admin API)
    TOKEN = "token"  # with a registration token (m.login.registration_token)
    OPEN = "open"  # anyone, with m.login.dummy: for test deployments only


@dataclass(frozen=True)
class ListenerConfig:
    """One HTTP listener."""

    host: str = "127.0.0.1"
    port: int = 8008
    tls_certificate: str | None = None
    tls_key: str | None = None
    #: Which APIs this listener serves: client, federation, media, metrics, health.
    resources: tuple[str, ...] = ("client", "federation", "media", "health", "metrics")


@dataclass(frozen=True)
class DatabaseConfig:
    """Where data lives: ``sqlite:///path`` (relative to the config file) or ``postgresql://``."""

    url: str = "sqlite:///data/homeserver.db"
    pool_size: int = 10


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class LimitsConfig:
    #: Largest accepted JSON request body, in bytes (media has its own limit).
    max_request_body_bytes: int = 1_048_576
    #: Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    shutdown_grace_period_s: float = 10.0


@dataclass(frozen=True)
class CorsConfig:
    #: Origins allowed to call the client API from a browser; ``"*"`` for any.
    allowed_origins: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``burst_count`` requests at once, refilled at ``per_second``."""

    per_second: float = 1.0
    burst_count: int = 10


@dataclass(frozen=True)
class RateLimitsConfig:
    enabled: bool = True
    #: Any authenticated client request not covered below.
    client_default: RateLimit = RateLimit(per_second=10.0, burst_count=50)
    login: RateLimit = RateLimit(per_second=0.17, burst_count=3)
    registration: RateLimit = RateLimit(per_second=0.17, burst_count=3)
    message: RateLimit = RateLimit(per_second=5.0, burst_count=30)
    #: Phone number verification codes, per number (modelled on Signal).
    sms_per_number: RateLimit = RateLimit(per_second=1 / 30, burst_count=6)
    sms_per_ip: RateLimit = RateLimit(per_second=0.1, burst_count=20)


@dataclass(frozen=True)
class RegistrationConfig:
    policy: RegistrationPolicy = RegistrationPolicy.CLOSED
    #: Allow guest accounts (``kind=guest``).
    allow_guests: bool = False


@dataclass(frozen=True)
class AuthConfig:
    """Passwords, access and refresh tokens, user-interactive auth sessions."""

    #: Shortest password accepted at registration and password change (``M_WEAK_PASSWORD``).
    password_min_length: int = 8
    #: Lifetime of access tokens of clients that cannot refresh; null: they never expire.
    access_token_lifetime_s: float | None = None
    #: Lifetime of access tokens of clients that sent ``refresh_token: true``.
    refreshable_access_token_lifetime_s: float = 300.0
    #: Lifetime of refresh tokens; null: until used or logged out.
    refresh_token_lifetime_s: float | None = None
    #: How long a user-interactive authentication session lives.
    uia_session_lifetime_s: float = 900.0


@dataclass(frozen=True)
class OtpConfig:
    """Phone number verification by SMS code (sign-up, login by phone, ``/account/3pid``)."""

    #: Offer phone number verification at all.
    enabled: bool = False
    #: ``file``: append ``number code`` lines to ``file_path`` (development, tests).
    #: ``http``: POST ``{"to", "body"}`` to ``gateway_url`` with ``gateway_token``.
    sender: Literal["file", "http"] = "file"
    #: For ``sender: file``; relative to ``data_dir``.
    file_path: str = "sms_codes.log"
    gateway_url: str | None = None
    gateway_token: str | None = None
    gateway_timeout_s: float = 10.0
    #: ISO 3166-1 alpha-2 regions whose numbers are accepted; empty: every region.
    allowed_countries: tuple[str, ...] = ()
    #: Regions whose numbers are refused (applies after ``allowed_countries``).
    blocked_countries: tuple[str, ...] = ()
    #: How long a code is valid.
    code_ttl_s: int = 600
    #: Wrong codes before a code is burnt (a new one must be requested).
    max_attempts: int = 3
    #: Shortest time between two codes for the same session.
    resend_interval_s: int = 60
    #: How long a validation session (and a validated number) can be used.
    session_lifetime_s: int = 86400
    #: The SMS text; ``{code}`` is replaced by the code.
    message_template: str = "Your verification code is {code}"


# --- media (issue 9) config ----------------------------------------------------------------------

# --- end media (issue 9) config ------------------------------------------------------------------


# --- e2ee (issue 8) config -----------------------------------------------------------------------

# --- end e2ee (issue 8) config -------------------------------------------------------------------


# --- sync, typing, receipts, presence (issue 7) config -------------------------------------------

# --- end sync, typing, receipts, presence (issue 7) config ---------------------------------------


# --- room directory (issue 6) config -------------------------------------------------------------

# --- end room directory (issue 6) config ---------------------------------------------------------


# --- registration lock (issue 5) config ----------------------------------------------------------

# --- end registration lock (issue 5) config ------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The whole configuration. ``config_path`` and ``base_dir`` are filled in by the loader."""

    server_name: str
    listeners: tuple[ListenerConfig, ...] = (ListenerConfig(),)
    database: DatabaseConfig = DatabaseConfig()
    signing_key_path: str = "data/signing.key"
    data_dir: str = "data"
    logging: LoggingConfig = LoggingConfig()
    limits: LimitsConfig = LimitsConfig()
    cors: CorsConfig = CorsConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    registration: RegistrationConfig = RegistrationConfig()
    auth: AuthConfig = AuthConfig()
    otp: OtpConfig = OtpConfig()
    #: Room version of new rooms unless the client asks for another.
    default_room_version: str = "12"
    # --- media (issue 9)
    # --- e2ee (issue 8)
    # --- sync, typing, receipts, presence (issue 7)
    # --- room directory (issue 6)
    # --- registration lock (issue 5)
    config_path: str = field(default="", metadata={"internal": True})

    def resolve_path(self, p: str) -> Path:
        """A path from the file, relative to the config file's directory."""
        path = Path(p)
        if path.is_absolute() or not self.config_path:
            return path
        return Path(self.config_path).resolve().parent / path

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute."""
        return resolve_database_url(self.database.url, self.resolve_path)


_SQLITE_RE = re.compile(r"^sqlite:///(?P<path>.+)$")
_PG_RE = re.compile(r"^postgres(ql)?://[^/?#]*(/[^/?#]*)?(\?.*)?$")


def resolve_database_url(url: str, resolve: typing.Callable[[str], Path]) -> str:
    m = _SQLITE_RE.match(url)
    if m:
        return "sqlite:///" + str(resolve(m.group("path")))
    return url


def _check_database_url(url: str) -> str | None:
    if _SQLITE_RE.match(url):
        return None
    if _PG_RE.match(url):
        return None
    return "must be sqlite:///<path> or postgresql://user:password@host:port/dbname"


_SERVER_NAME_RE = re.compile(
    r"^(\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(\.[0-9]{1,3}){3}|[A-Za-z0-9.-]{1,255})(:[0-9]{1,5})?$"
)


# --- generic typed loader -------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " or ".join(repr(m.value) for m in tp)
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, key, problems)
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is tuple:
        if isinstance(value, list):
            item_tp = typing.get_args(tp)[0]
            return tuple(_convert(item_tp, v, f"{key}[{i}]", problems) for i, v in enumerate(value))
    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, dict):
            return _load_dataclass(tp, value, key, problems)
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            pass
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    problems.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return None


def _load_dataclass(cls: type[Any], data: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            problems.append(f"{key}: unknown option")
            continue
        kwargs[name] = _convert(hints[name], value, key, problems)
    for name, f in fields.items():
        if (
            name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            key = f"{prefix}.{name}" if prefix else name
            problems.append(f"{key}: required option is missing")
    # A failed conversion (already reported) leaves None: drop it so the default applies
    # and loading goes on to collect every problem.
    kwargs = {k: v for k, v in kwargs.items() if v is not None or _is_optional(hints[k])}
    try:
        return cls(**kwargs)
    except TypeError:
        return None


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(tp)


def _validate(cfg: Config, problems: list[str]) -> None:
    if not _SERVER_NAME_RE.match(cfg.server_name):
        problems.append(f"server_name: not a valid server name: {cfg.server_name!r}")
    if not cfg.listeners:
        problems.append("listeners: at least one listener is required")
    known_resources = {"client", "federation", "media", "health", "metrics"}
    for i, lst in enumerate(cfg.listeners):
        if not 0 <= lst.port <= 65535:
            problems.append(f"listeners[{i}].port: must be 0-65535, got {lst.port}")
        for r in lst.resources:
            if r not in known_resources:
                problems.append(
                    f"listeners[{i}].resources: unknown resource {r!r} "
                    f"(known: {', '.join(sorted(known_resources))})"
                )
        if (lst.tls_certificate is None) != (lst.tls_key is None):
            problems.append(f"listeners[{i}]: tls_certificate and tls_key go together")
        for name in ("tls_certificate", "tls_key"):
            p = getattr(lst, name)
            if p is not None:
                path = cfg.resolve_path(p)
                try:
                    with open(path, "rb") as fh:
                        fh.read(1)
                except OSError as e:
                    problems.append(f"listeners[{i}].{name}: cannot read {path}: {e.strerror}")
    err = _check_database_url(cfg.database.url)
    if err:
        problems.append(f"database.url: {err}")
    if cfg.database.pool_size < 1:
        problems.append("database.pool_size: must be at least 1")
    if cfg.limits.max_request_body_bytes < 1024:
        problems.append("limits.max_request_body_bytes: must be at least 1024")
    if cfg.limits.shutdown_grace_period_s < 0:
        problems.append("limits.shutdown_grace_period_s: must not be negative")
    for name in (f.name for f in dataclasses.fields(RateLimitsConfig)):
        rl = getattr(cfg.rate_limits, name)
        if isinstance(rl, RateLimit) and (rl.per_second <= 0 or rl.burst_count < 1):
            problems.append(f"rate_limits.{name}: per_second must be > 0 and burst_count >= 1")
    _validate_accounts(cfg, problems)
    from federation.core.room_versions import KNOWN_ROOM_VERSIONS

    if cfg.default_room_version not in KNOWN_ROOM_VERSIONS:
        problems.append(f"default_room_version: unknown room version {cfg.default_room_version!r}")


_REGION_RE = re.compile(r"^[A-Z]{2}$")


def _validate_accounts(cfg: Config, problems: list[str]) -> None:
    a = cfg.auth
    if a.password_min_length < 1:
        problems.append("auth.password_min_length: must be at least 1")
    for name in ("access_token_lifetime_s", "refresh_token_lifetime_s"):
        value = getattr(a, name)
        if value is not None and value <= 0:
            problems.append(f"auth.{name}: must be > 0 or null")
    if a.refreshable_access_token_lifetime_s <= 0:
        problems.append("auth.refreshable_access_token_lifetime_s: must be > 0")
    if a.uia_session_lifetime_s <= 0:
        problems.append("auth.uia_session_lifetime_s: must be > 0")
    o = cfg.otp
    if o.enabled and o.sender == "http" and not o.gateway_url:
        problems.append("otp.gateway_url: required when otp.sender is http")
    if o.gateway_url is not None and not o.gateway_url.startswith(("http://", "https://")):
        problems.append("otp.gateway_url: must be an http:// or https:// URL")
    for name in ("allowed_countries", "blocked_countries"):
        for code in getattr(o, name):
            if not _REGION_RE.match(code):
                problems.append(f"otp.{name}: {code!r} is not an ISO 3166-1 alpha-2 code (DE, US)")
    for name in ("code_ttl_s", "max_attempts", "session_lifetime_s"):
        if getattr(o, name) < 1:
            problems.append(f"otp.{name}: must be at least 1")
    if o.resend_interval_s < 0:
        problems.append("otp.resend_interval_s: must not be negative")
    if o.gateway_timeout_s <= 0:
        problems.append("otp.gateway_timeout_s: must be > 0")
    if "{code}" not in o.message_template:
        problems.append("otp.message_template: must contain {code}")


def parse_config(data: Any, path: str) -> Config:
    """Build a :class:`Config` from parsed YAML.

    Raises:
        ConfigError: listing every problem found.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, ["the file must contain a mapping of options"])
    problems: list[str] = []
    cfg = _load_dataclass(Config, data, "", problems)
    if cfg is not None:
        cfg = dataclasses.replace(cfg, config_path=str(Path(path).resolve()) if path else "")
        _validate(cfg, problems)
    if problems or cfg is None:
        raise ConfigError(path, problems or ["invalid configuration"])
    return typing.cast(Config, cfg)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the configuration file at ``path``.

    Raises:
        ConfigError: the file is unreadable, not YAML, or invalid.
    """
    p = str(path)
    try:
        with open(p, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise ConfigError(p, [f"cannot read the file: {e.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(p, [f"not valid YAML: {e}"]) from None
    return parse_config(data, p)


def sample_config_text(server_name: str) -> str:
    """The documented default configuration, for ``generate-config``."""
    template = (Path(__file__).parent / "sample_config.yaml").read_text(encoding="utf-8")
    return template.replace("server_name: localhost", f"server_name: {server_name}", 1)
