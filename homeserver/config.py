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
import json
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
    #: Validation mails, per address (as Synapse's ``rc_3pid_validation``) and per IP address.
    email_per_address: RateLimit = RateLimit(per_second=0.003, burst_count=5)
    email_per_ip: RateLimit = RateLimit(per_second=0.1, burst_count=20)


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
    #: ``http``: send each code to the SMS gateway at ``gateway_url``.
    #: ``file``: append ``number code`` lines to ``file_path``; ``log``: write the code to the
    #: server log. Both only with ``development: true``.
    sender: Literal["file", "log", "http"] = "file"
    #: This is a development deployment: codes may go to a file or the log instead of phones.
    development: bool = False
    #: For ``sender: file``; relative to ``data_dir``.
    file_path: str = "sms_codes.log"
    gateway_url: str | None = None
    gateway_token: str | None = None
    gateway_timeout_s: float = 10.0
    #: ``POST`` or ``PUT``.
    gateway_method: Literal["POST", "PUT"] = "POST"
    #: Extra request headers, each ``"Name: value"``.
    gateway_headers: tuple[str, ...] = ()
    #: The JSON body; ``{number}``, ``{message}`` and ``{code}`` are replaced in its strings.
    gateway_body_template: str = '{"to": "{number}", "body": "{message}"}'
    #: Retries after a failed request (connection error, timeout, 5xx, 429).
    gateway_retries: int = 2
    #: Wait before the first retry; doubled for each further one.
    gateway_retry_backoff_s: float = 0.5
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


# --- email addresses as third-party identifiers -------------------------------------------------


@dataclass(frozen=True)
class EmailConfig:
    """Email addresses as third-party identifiers: validation mails sent over SMTP."""

    #: Offer email validation (``email/requestToken``, ``m.login.email.identity``).
    enabled: bool = False
    smtp_host: str = "localhost"
    smtp_port: int = 25
    #: Log in to the SMTP server with these (both or neither).
    smtp_user: str | None = None
    smtp_password: str | None = None
    #: ``STARTTLS`` after connecting, and refuse a server that does not offer it.
    require_transport_security: bool = False
    #: The ``From:`` of validation mails.
    notif_from: str = "Matrix <noreply@localhost>"
    #: The subject; ``{server_name}`` is replaced.
    subject_template: str = "Validate your email address on {server_name}"
    #: The mail text; ``{link}`` (the validation link), ``{token}`` and ``{server_name}`` are
    #: replaced.
    body_template: str = (
        "Open this link to validate your email address: {link}\n\n"
        "Or enter this code: {token}\n"
    )
    #: Timeout of one SMTP conversation.
    smtp_timeout_s: float = 30.0
    #: How long a validation token is valid.
    token_ttl_s: int = 3600
    #: How long a validation session (and a validated address) can be used.
    session_lifetime_s: int = 86400


# --- end email addresses as third-party identifiers ---------------------------------------------


# --- media (issue 9) config ----------------------------------------------------------------------


@dataclass(frozen=True)
class ThumbnailSize:
    """One thumbnail size the server makes for every uploaded image."""

    width: int
    height: int
    #: ``crop``: exactly this size (or this aspect ratio); ``scale``: fit inside it.
    method: Literal["crop", "scale"] = "scale"


@dataclass(frozen=True)
class MediaConfig:
    """The media repository: uploads, downloads, thumbnails, quotas and retention."""

    #: Where files are kept; relative to ``data_dir``.
    store_path: str = "media"
    #: Largest upload, in bytes (``413 M_TOO_LARGE`` above it, before the body is buffered).
    max_upload_bytes: int = 52_428_800
    #: Total bytes of media one local user may have stored; null: no quota.
    user_quota_bytes: int | None = None
    #: How long an ID from ``POST /_matrix/media/v1/create`` stays usable.
    unused_id_lifetime_s: float = 86400.0
    #: Created-but-not-uploaded IDs a user may hold at once (``429 M_LIMIT_EXCEEDED`` above).
    max_pending_uploads: int = 20
    #: Longest a download of a not-yet-uploaded ID waits (``timeout_ms`` is capped at this).
    max_download_wait_s: float = 20.0
    #: Media created before this time (ms since the epoch) is still served by the deprecated,
    #: unauthenticated ``/_matrix/media/v3/download|thumbnail``; newer media only by the
    #: authenticated ``/_matrix/client/v1/media/...``. 0: every item is frozen.
    unauthenticated_media_freeze_ts: int = 0
    #: Thumbnails made for every uploaded image (the spec's recommended set by default).
    thumbnail_sizes: tuple[ThumbnailSize, ...] = (
        ThumbnailSize(32, 32, "crop"),
        ThumbnailSize(96, 96, "crop"),
        ThumbnailSize(320, 240, "scale"),
        ThumbnailSize(640, 480, "scale"),
        ThumbnailSize(800, 600, "scale"),
    )
    #: Make the configured sizes at upload time (else on the first request).
    pregenerate_thumbnails: bool = True
    #: Make other sizes on request (cached); else the nearest configured size is served.
    dynamic_thumbnails: bool = True
    #: Largest width or height of an on-demand thumbnail.
    max_thumbnail_dimension: int = 1600
    #: Images with more pixels than this (width x height x frames) are not thumbnailed
    #: (``413 M_TOO_LARGE``): decompression bombs.
    max_image_pixels: int = 33_554_432
    #: Delete local media not downloaded for this long; null: keep forever.
    local_media_lifetime_s: float | None = None
    #: Delete cached remote media not used for this long; null: keep forever.
    remote_media_lifetime_s: float | None = 7_776_000.0
    #: How often the retention and expiry loop runs.
    retention_interval_s: float = 3600.0


def _validate_media(cfg: Config, problems: list[str]) -> None:
    m = cfg.media
    if m.max_upload_bytes < 1:
        problems.append("media.max_upload_bytes: must be at least 1")
    if m.user_quota_bytes is not None and m.user_quota_bytes < 0:
        problems.append("media.user_quota_bytes: must not be negative")
    for name in ("unused_id_lifetime_s", "retention_interval_s"):
        if getattr(m, name) <= 0:
            problems.append(f"media.{name}: must be > 0")
    if m.max_download_wait_s < 0:
        problems.append("media.max_download_wait_s: must not be negative")
    if m.max_pending_uploads < 1:
        problems.append("media.max_pending_uploads: must be at least 1")
    for name in ("local_media_lifetime_s", "remote_media_lifetime_s"):
        value = getattr(m, name)
        if value is not None and value <= 0:
            problems.append(f"media.{name}: must be > 0 or null")
    if m.max_thumbnail_dimension < 1 or m.max_image_pixels < 1:
        problems.append("media.max_thumbnail_dimension and max_image_pixels: must be at least 1")
    for i, size in enumerate(m.thumbnail_sizes):
        if not (1 <= size.width <= m.max_thumbnail_dimension) or not (
            1 <= size.height <= m.max_thumbnail_dimension
        ):
            problems.append(
                f"media.thumbnail_sizes[{i}]: width and height must be 1-"
                f"{m.max_thumbnail_dimension} (max_thumbnail_dimension)"
            )
    if not m.store_path or "\0" in m.store_path:
        problems.append("media.store_path: must be a path")


# --- end media (issue 9) config ------------------------------------------------------------------


# --- e2ee (issue 8) config -----------------------------------------------------------------------


@dataclass(frozen=True)
class E2eeConfig:
    """End-to-end encryption: how much the server queues for devices, and for whom."""

    #: To-device messages kept for one device until it syncs; beyond this, new messages to
    #: that device are dropped (the oldest, e.g. Olm session set-up, are kept).
    to_device_queue_limit: int = 5000
    #: ``PUT /sendToDevice`` requests per sender (token bucket, only if rate_limits.enabled).
    to_device_rate_limit: RateLimit = RateLimit(per_second=10.0, burst_count=100)


# --- end e2ee (issue 8) config -------------------------------------------------------------------


# --- sync, typing, receipts, presence (issue 7) config -------------------------------------------


@dataclass(frozen=True)
class TypingConfig:
    """Typing notifications (``PUT /rooms/{roomId}/typing/{userId}``)."""

    #: Timeout when a client sends ``typing: true`` without one.
    default_timeout_ms: int = 30_000
    #: Longest timeout a client may ask for; longer ones are cut to this.
    max_timeout_ms: int = 120_000

    def problems(self) -> list[str]:
        """What is wrong with the values (for ``_validate``)."""
        out = []
        if self.default_timeout_ms < 1:
            out.append("typing.default_timeout_ms: must be at least 1")
        if self.max_timeout_ms < self.default_timeout_ms:
            out.append("typing.max_timeout_ms: must be at least typing.default_timeout_ms")
        return out


@dataclass(frozen=True)
class PresenceConfig:
    """Presence: online / unavailable / offline, last active, and their timers."""

    #: Track and share presence at all (off: ``PUT`` is accepted and ignored, ``GET`` says
    #: ``offline``, ``/sync`` carries none).
    enabled: bool = True
    #: Online users with no activity (requests other than /sync) for this long become
    #: ``unavailable``.
    idle_timeout_s: float = 300.0
    #: Users with neither a /sync nor any other request for this long become ``offline``
    #: (longer than clients' long-poll timeout, usually 30 s).
    offline_timeout_s: float = 90.0
    #: ``currently_active`` stays true this long after the last activity.
    currently_active_s: float = 60.0
    #: Changes are collected for this long and written in one transaction (also the longest
    #: delay before a change reaches other users).
    flush_interval_s: float = 1.0
    #: A last-active time that changes nothing others see is written at most this often per
    #: user.
    last_active_write_interval_s: float = 60.0

    def problems(self) -> list[str]:
        """What is wrong with the values (for ``_validate``)."""
        out = [
            f"presence.{name}: must be > 0"
            for name in (
                "idle_timeout_s",
                "offline_timeout_s",
                "currently_active_s",
                "flush_interval_s",
                "last_active_write_interval_s",
            )
            if getattr(self, name) <= 0
        ]
        if self.idle_timeout_s > 0 and self.currently_active_s > self.idle_timeout_s:
            out.append("presence.currently_active_s: must not be longer than idle_timeout_s")
        return out


# --- end sync, typing, receipts, presence (issue 7) config ---------------------------------------


# --- pushers config ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushConfig:
    """Pushers: notifications sent to push gateways."""

    #: Accept pusher URLs on loopback, private and link-local addresses (tests, closed networks).
    allow_private_destinations: bool = False
    #: Seconds one request to a push gateway may take.
    gateway_timeout_s: float = 10.0
    #: Seconds before the first retry of a failed push (doubling with each failure).
    retry_initial_s: float = 1.0
    #: The longest wait between retries.
    retry_max_s: float = 600.0
    #: A pusher failing for this long skips the notification it is on.
    give_up_after_s: float = 86400.0
    #: PEM bundle that replaces the system trust store for push gateway TLS (null: system).
    custom_ca_file: str | None = None
    #: Keep connections to push gateways open between requests (false: one per request).
    reuse_connections: bool = True

    def problems(self) -> list[str]:
        """What is wrong with the values (for ``_validate``)."""
        out = [
            f"push.{name}: must be > 0"
            for name in ("gateway_timeout_s", "retry_initial_s", "retry_max_s", "give_up_after_s")
            if getattr(self, name) <= 0
        ]
        if self.retry_max_s < self.retry_initial_s:
            out.append("push.retry_max_s: must be at least push.retry_initial_s")
        return out

    def ca_problems(self, resolve: typing.Callable[[str], Path]) -> list[str]:
        """``custom_ca_file`` cannot be read."""
        if self.custom_ca_file is None:
            return []
        path = resolve(self.custom_ca_file)
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as e:
            return [f"push.custom_ca_file: cannot read {path}: {e.strerror}"]
        return []


# --- end pushers config --------------------------------------------------------------------------


# --- identity server config ----------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityConfig:
    """Requests to identity servers (third-party invites, ``/account/3pid/bind``)."""

    #: Reach identity servers on loopback, private and link-local addresses (tests only).
    allow_private_destinations: bool = False
    #: Seconds one request to an identity server may take.
    request_timeout_s: float = 10.0
    #: Check identity servers' TLS certificates (false: tests against self-signed ones only).
    verify_tls: bool = True

    def problems(self) -> list[str]:
        """What is wrong with the values (for ``_validate``)."""
        if self.request_timeout_s <= 0:
            return ["identity.request_timeout_s: must be > 0"]
        return []


# --- end identity server config ------------------------------------------------------------------


# --- room directory (issue 6) config -------------------------------------------------------------


@dataclass(frozen=True)
class RoomDirectoryConfig:
    """Room aliases and the published room directory (``/directory``, ``/publicRooms``)."""

    #: Who may publish a room in the directory (``PUT /directory/list/room``, ``createRoom``
    #: with ``visibility: public``) or take it out: ``room_moderators`` (anyone who may send
    #: ``m.room.canonical_alias`` in the room) or ``server_admins``. Server admins always may.
    publish: Literal["room_moderators", "server_admins"] = "room_moderators"
    #: Creating an alias for a room requires being joined to it (server admins are exempt).
    require_membership_for_aliases: bool = True
    #: Answer ``GET /publicRooms`` without an access token (the spec allows it; off by default
    #: so the list of an organisation's rooms is not public).
    public_rooms_without_auth: bool = False


# --- end room directory (issue 6) config ---------------------------------------------------------


# --- user directory config ---------------------------------------------------------------------


@dataclass(frozen=True)
class UserDirectoryConfig:
    """The user directory (``POST /user_directory/search``)."""

    #: Search every local user, not only those who share a room with the searcher or are in
    #: a public room (join rule ``public`` or history ``world_readable``), as the spec allows.
    search_all_users: bool = False


# --- end user directory config -----------------------------------------------------------------


# --- registration lock (issue 5) config ----------------------------------------------------------


@dataclass(frozen=True)
class RegistrationLockConfig:
    """Registration lock (from Signal): a PIN that logins by phone number must also give."""

    #: Offer the PIN API and enforce PINs that were set.
    enabled: bool = True
    #: After this many seconds without any activity of the account the PIN is no longer asked.
    inactivity_lapse_s: int = 7 * 86400
    #: Wrong PINs accepted per window before every attempt is refused (423).
    max_failed_attempts: int = 10
    #: The window of ``max_failed_attempts``, from the first wrong PIN.
    failed_attempts_window_s: int = 86400
    #: Shortest and longest accepted PIN (characters).
    pin_min_length: int = 4
    pin_max_length: int = 64


def _validate_registration_lock(cfg: Config, problems: list[str]) -> None:
    r = cfg.registration_lock
    for name in ("inactivity_lapse_s", "max_failed_attempts", "failed_attempts_window_s"):
        if getattr(r, name) < 1:
            problems.append(f"registration_lock.{name}: must be at least 1")
    if not 1 <= r.pin_min_length <= r.pin_max_length <= 1024:
        problems.append("registration_lock: need 1 <= pin_min_length <= pin_max_length <= 1024")
    url = cfg.public_baseurl
    if url is not None and (
        not url.startswith(("http://", "https://")) or "?" in url or "#" in url
    ):
        problems.append("public_baseurl: must be an http:// or https:// URL without query")
    secret = cfg.registration_shared_secret
    if secret is not None and len(secret) < 16:
        problems.append("registration_shared_secret: must be at least 16 characters")


# --- end registration lock (issue 5) config ------------------------------------------------------


# --- federation: keys, request authentication, listener config -----------------------------------


#: A 32-byte ed25519 key in unpadded base64 (either alphabet).
_KEY_B64_RE = re.compile(r"[A-Za-z0-9+/_-]{43}=?")


@dataclass(frozen=True)
class TrustedKeyServer:
    """A notary: a server we ask for other servers' keys (``POST /_matrix/key/v2/query``)."""

    server_name: str
    #: The notary's own keys (key ID → unpadded base64); null: fetched from the notary itself.
    verify_keys: dict[str, str] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class FederationConfig:
    """Talking to other homeservers: who, how we trust their keys, and outbound safety."""

    #: Federate at all (false: signed requests from other servers get 403, none is contacted).
    enabled: bool = True
    #: Only these servers may federate with us; null: every server not in the denylist.
    domain_allowlist: tuple[str, ...] | None = None
    #: Servers whose requests are refused (403 ``M_FORBIDDEN``) and that we never contact.
    domain_denylist: tuple[str, ...] = ()
    #: Notaries asked for other servers' keys before the servers themselves; none by default.
    trusted_key_servers: tuple[TrustedKeyServer, ...] = ()
    #: PEM bundle that replaces the system trust store for outbound federation TLS.
    custom_ca_file: str | None = None
    #: Allow connecting to loopback, private, link-local and other non-public addresses
    #: (checked before connecting and again after DNS resolution). For tests only.
    allow_private_destinations: bool = False
    #: How long our ``/_matrix/key/v2/server`` answers say our keys are valid (seconds).
    key_validity_period_s: int = 86400
    #: Timeout of one outbound federation request (seconds).
    request_timeout_s: float = 60.0

    def problems(self, resolve: typing.Callable[[str], Path]) -> list[str]:
        """What is wrong with the values (for ``_validate``)."""
        out = []
        for name in ("domain_allowlist", "domain_denylist"):
            for server in getattr(self, name) or ():
                if not _SERVER_NAME_RE.fullmatch(server):
                    out.append(f"federation.{name}: not a server name: {server!r}")
        for i, notary in enumerate(self.trusted_key_servers):
            if notary is None:  # already reported by the loader
                continue
            if not _SERVER_NAME_RE.fullmatch(notary.server_name):
                out.append(f"federation.trusted_key_servers[{i}].server_name: not a server name")
            for key_id, key in (notary.verify_keys or {}).items():
                if not key_id.startswith("ed25519:") or not _KEY_B64_RE.fullmatch(key):
                    out.append(
                        f"federation.trusted_key_servers[{i}].verify_keys.{key_id}: "
                        "expected ed25519:<version> and a 32-byte unpadded base64 key"
                    )
        if self.custom_ca_file is not None:
            path = resolve(self.custom_ca_file)
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
            except OSError as e:
                out.append(f"federation.custom_ca_file: cannot read {path}: {e.strerror}")
        if self.key_validity_period_s < 60:
            out.append("federation.key_validity_period_s: must be at least 60")
        if self.request_timeout_s <= 0:
            out.append("federation.request_timeout_s: must be > 0")
        return out


# --- end federation: keys, request authentication, listener config -------------------------------


# --- single sign-on (CAS) and login tokens config ------------------------------------------------


@dataclass(frozen=True)
class CasConfig:
    """Single sign-on through a CAS server (CAS 2.0 ``proxyValidate``)."""

    #: Offer ``m.login.sso`` (and the legacy ``m.login.cas``) through the CAS server below.
    enabled: bool = False
    #: The CAS server's base URL; ``<server_url>/login`` and ``<server_url>/proxyValidate``.
    server_url: str | None = None
    #: The base URL of this server that CAS redirects back to (null: ``public_baseurl``).
    service_url: str | None = None
    #: The CAS attribute that gives a new account its display name (null: the localpart).
    displayname_attribute: str | None = None
    #: Attributes the CAS user must have, with these exact values, to log in.
    required_attributes: dict[str, str] = field(default_factory=dict, hash=False)
    #: PEM bundle that replaces the system trust store for TLS to the CAS server (null: system).
    custom_ca_file: str | None = None
    #: Seconds a ticket validation request may take.
    request_timeout_s: float = 10.0

    def problems(
        self, public_baseurl: str | None, resolve: typing.Callable[[str], Path]
    ) -> list[str]:
        """What is wrong with the values (for ``_validate``)."""
        out: list[str] = []
        for name in ("server_url", "service_url"):
            url = getattr(self, name)
            if url is not None and (not url.startswith(("http://", "https://")) or "?" in url):
                out.append(f"cas.{name}: must be an http:// or https:// URL without query")
        if self.enabled and self.server_url is None:
            out.append("cas.server_url: required when cas.enabled is true")
        if self.enabled and self.service_url is None and public_baseurl is None:
            out.append(
                "cas.service_url: required when cas.enabled is true and public_baseurl is null"
            )
        if self.request_timeout_s <= 0:
            out.append("cas.request_timeout_s: must be > 0")
        if self.custom_ca_file is not None:
            path = resolve(self.custom_ca_file)
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
            except OSError as e:
                out.append(f"cas.custom_ca_file: cannot read {path}: {e.strerror}")
        return out


@dataclass(frozen=True)
class LoginTokenConfig:
    """Short-lived, single-use login tokens (``m.login.token``)."""

    #: Seconds a login token stays valid.
    lifetime_s: float = 120.0
    #: Offer ``POST /_matrix/client/v1/login/get_token`` (a token for a new device of a
    #: logged-in user).
    allow_get_token: bool = False

    def problems(self) -> list[str]:
        """What is wrong with the values (for ``_validate``)."""
        if not 1 <= self.lifetime_s <= 3600:
            return ["login_tokens.lifetime_s: must be between 1 and 3600"]
        return []


# --- end single sign-on (CAS) and login tokens config --------------------------------------------


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
    # --- email addresses as third-party identifiers
    email: EmailConfig = EmailConfig()
    #: Room version of new rooms unless the client asks for another.
    default_room_version: str = "12"
    # --- media (issue 9)
    media: MediaConfig = MediaConfig()
    # --- e2ee (issue 8)
    e2ee: E2eeConfig = E2eeConfig()
    # --- sync, typing, receipts, presence (issue 7)
    typing: TypingConfig = TypingConfig()
    presence: PresenceConfig = PresenceConfig()
    # --- pushers
    push: PushConfig = PushConfig()
    # --- identity server
    identity: IdentityConfig = IdentityConfig()
    # --- room directory (issue 6)
    room_directory: RoomDirectoryConfig = RoomDirectoryConfig()
    # --- user directory
    user_directory: UserDirectoryConfig = UserDirectoryConfig()
    # --- registration lock (issue 5)
    #: The URL clients reach this server at (``submit_url``, ``/.well-known/matrix/client``);
    #: null: built from each request's Host header.
    public_baseurl: str | None = None
    #: Secret of ``/_synapse/admin/v1/register`` (HMAC-SHA1); null: that API is off.
    registration_shared_secret: str | None = None
    registration_lock: RegistrationLockConfig = RegistrationLockConfig()
    # --- federation: keys, request authentication, listener
    federation: FederationConfig = FederationConfig()
    # --- single sign-on (CAS) and login tokens
    cas: CasConfig = CasConfig()
    login_tokens: LoginTokenConfig = LoginTokenConfig()
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


_SQLITE_RE = re.compile(r"sqlite:///(?P<path>.+)")
_PG_RE = re.compile(r"postgres(ql)?://[^/?#]*(/[^/?#]*)?(\?.*)?")


def resolve_database_url(url: str, resolve: typing.Callable[[str], Path]) -> str:
    m = _SQLITE_RE.fullmatch(url)
    if m:
        return "sqlite:///" + str(resolve(m.group("path")))
    return url


def _check_database_url(url: str) -> str | None:
    if _SQLITE_RE.fullmatch(url):
        return None
    if _PG_RE.fullmatch(url):
        return None
    return "must be sqlite:///<path> or postgresql://user:password@host:port/dbname"


_SERVER_NAME_RE = re.compile(
    r"(\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(\.[0-9]{1,3}){3}|[A-Za-z0-9.-]{1,255})(:[0-9]{1,5})?"
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
    elif origin is dict:  # string keys only (federation.trusted_key_servers[].verify_keys)
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            value_tp = typing.get_args(tp)[1]
            out = {k: _convert(value_tp, v, f"{key}.{k}", problems) for k, v in value.items()}
            return {k: v for k, v in out.items() if v is not None}
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
    problems += cfg.typing.problems() + cfg.presence.problems()
    problems += cfg.push.problems() + cfg.push.ca_problems(cfg.resolve_path)  # pushers
    problems += cfg.identity.problems()  # identity server
    problems += cfg.federation.problems(cfg.resolve_path)  # federation: keys
    problems += cfg.cas.problems(cfg.public_baseurl, cfg.resolve_path)  # single sign-on
    problems += cfg.login_tokens.problems()  # login tokens
    if not _SERVER_NAME_RE.fullmatch(cfg.server_name):
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
    problems += _email_problems(cfg.email)  # email addresses as third-party identifiers
    _validate_media(cfg, problems)  # media (issue 9)
    from federation.core.room_versions import KNOWN_ROOM_VERSIONS

    if cfg.default_room_version not in KNOWN_ROOM_VERSIONS:
        problems.append(f"default_room_version: unknown room version {cfg.default_room_version!r}")


def _email_problems(e: EmailConfig) -> list[str]:
    """What is wrong with the ``email`` section."""
    problems = []
    if not 0 < e.smtp_port <= 65535:
        problems.append("email.smtp_port: must be 1-65535")
    if (e.smtp_user is None) != (e.smtp_password is None):
        problems.append("email.smtp_user, smtp_password: give both or neither")
    if "{link}" not in e.body_template and "{token}" not in e.body_template:
        problems.append("email.body_template: must contain {link} or {token}")
    if e.smtp_timeout_s <= 0:
        problems.append("email.smtp_timeout_s: must be > 0")
    if e.token_ttl_s < 1 or e.session_lifetime_s < 1:
        problems.append("email.token_ttl_s, session_lifetime_s: must be at least 1")
    if "@" not in e.notif_from:
        problems.append("email.notif_from: must be an email address")
    return problems


_REGION_RE = re.compile(r"[A-Z]{2}")


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
    if o.enabled and o.sender in ("file", "log") and not o.development:
        problems.append(
            f"otp.sender: {o.sender!r} does not send SMS (codes end up in a {o.sender}); it is"
            " for development only: use sender: http, or set otp.development: true"
        )
    if o.enabled and o.sender == "http" and not o.gateway_url:
        problems.append("otp.gateway_url: required when otp.sender is http")
    if o.gateway_url is not None and not o.gateway_url.startswith(("http://", "https://")):
        problems.append("otp.gateway_url: must be an http:// or https:// URL")
    for name in ("allowed_countries", "blocked_countries"):
        for code in getattr(o, name):
            if not _REGION_RE.fullmatch(code):
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
    for header in o.gateway_headers:
        name, sep, _ = header.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9-]+", name.strip()):
            problems.append(f"otp.gateway_headers: {header!r} is not 'Name: value'")
    try:
        body = json.loads(o.gateway_body_template)
    except ValueError:
        problems.append("otp.gateway_body_template: not valid JSON")
    else:
        if not isinstance(body, dict):
            problems.append("otp.gateway_body_template: must be a JSON object")
    if o.gateway_retries < 0 or o.gateway_retry_backoff_s < 0:
        problems.append("otp.gateway_retries, gateway_retry_backoff_s: must not be negative")
    _validate_registration_lock(cfg, problems)


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
