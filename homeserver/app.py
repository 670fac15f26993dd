"""The composition root.

Builds every store, service and API object by hand (constructor injection, no globals), owns
the nursery that every background task runs in, and serves HTTP with hypercorn's Trio worker.

Lifecycle (:func:`serve_homeserver`):

1. migrate the database to head (a lock stops two processes from both migrating);
2. open the database, load or create the signing key, build stores → services → APIs;
3. start one hypercorn server per listener, report the bound addresses through ``task_status``;
4. wait for the shutdown trigger (SIGTERM/SIGINT in ``__main__``, an event in tests);
5. stop accepting connections and give in-flight requests ``limits.shutdown_grace_period_s``;
6. cancel background tasks, close the database, return.

Nothing is acknowledged to a client before its transaction has committed, so stopping at any
point of this sequence loses nothing that was acknowledged.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import hypercorn.trio
import trio
from hypercorn.config import Config as HypercornConfig

from federation.core.signing import SigningKey
from homeserver.api._http import ObservedApp, RequestGate, build_asgi_app
from homeserver.api.admin.registration_tokens import RegistrationTokensAdminApi
from homeserver.api.client.account import AccountApi
from homeserver.api.client.account_data import AccountDataApi
from homeserver.api.client.capabilities import CapabilitiesApi
from homeserver.api.client.devices import DevicesApi
from homeserver.api.client.login import LoginApi
from homeserver.api.client.openid import OpenIdApi
from homeserver.api.client.profile import ProfileApi
from homeserver.api.client.register import RegisterApi
from homeserver.api.client.rooms import RoomsApi  # rooms (issue 6)
from homeserver.api.client.tags import TagsApi
from homeserver.api.client.user_directory import UserDirectoryApi
from homeserver.api.client.versions import VersionsApi
from homeserver.api.federation.openid import FederationOpenIdApi
from homeserver.api.metrics import HttpMetrics
from homeserver.api.ops import HealthApi, MetricsApi
from homeserver.clock import Clock, SystemClock
from homeserver.config import Config, ListenerConfig
from homeserver.keys import load_or_create_signing_key
from homeserver.services.account import AccountService
from homeserver.services.account_data import AccountDataService
from homeserver.services.auth import AuthService
from homeserver.services.devices import DeviceService
from homeserver.services.events import EventCreationService  # rooms (issue 6)
from homeserver.services.health import HealthService
from homeserver.services.notifier import InProcessNotifier, Notifier
from homeserver.services.openid import OpenIdService
from homeserver.services.otp import PhoneVerificationService
from homeserver.services.passwords import PasswordHasher
from homeserver.services.profile import ProfileService
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.registration import RegistrationService
from homeserver.services.rooms import RoomService  # rooms (issue 6)
from homeserver.services.sms import FileSmsSender, HttpSmsSender, SmsSender
from homeserver.services.uia import UiaService
from homeserver.services.user_directory import UserDirectoryService
from homeserver.storage import Database, Stores, migrate, open_stores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bound:
    """Where one listener ended up listening (port 0 in the config picks a free port)."""

    listener: ListenerConfig
    urls: list[str]


async def _with_timeout(check: Callable[[], Awaitable[None]], seconds: float = 2.0) -> bool:
    with trio.move_on_after(seconds):
        await check()
        return True
    return False


def _apis_for(resources: tuple[str, ...], apis: dict[str, list[object]]) -> list[object]:
    out: list[object] = []
    for r in resources:
        out.extend(apis.get(r, []))
    return out


def _hypercorn_config(cfg: Config, listener: ListenerConfig) -> HypercornConfig:
    hc = HypercornConfig()
    host = listener.host
    hc.bind = [f"[{host}]:{listener.port}" if ":" in host else f"{host}:{listener.port}"]
    hc.graceful_timeout = cfg.limits.shutdown_grace_period_s
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = 75
    hc.include_server_header = False
    if listener.tls_certificate and listener.tls_key:
        hc.certfile = str(cfg.resolve_path(listener.tls_certificate))
        hc.keyfile = str(cfg.resolve_path(listener.tls_key))
        hc.ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20"
        _ = ssl  # TLS settings come from hypercorn's defaults (TLS 1.2+).
    return hc


# --- accounts (issue 5): registration, login, tokens, UIA, phone verification --------------------


@dataclass(frozen=True)
class _Accounts:
    auth: AuthService
    uia: UiaService
    phones: PhoneVerificationService
    registration: RegistrationService
    apis: list[object]
    http: httpx.AsyncClient | None


def _accounts(cfg: Config, stores: Stores, clock: Clock, limiter: RateLimiter) -> _Accounts:
    """Registration, login/logout/refresh, account management, UIA and SMS codes."""
    max_body = cfg.limits.max_request_body_bytes
    hasher = PasswordHasher()
    http: httpx.AsyncClient | None = None
    sender: SmsSender
    if cfg.otp.sender == "http" and cfg.otp.gateway_url:
        http = httpx.AsyncClient()
        sender = HttpSmsSender(
            http,
            cfg.otp.gateway_url,
            token=cfg.otp.gateway_token,
            timeout_s=cfg.otp.gateway_timeout_s,
            template=cfg.otp.message_template,
        )
    else:
        sender = FileSmsSender(cfg.resolve_path(cfg.data_dir) / cfg.otp.file_path)
    phones = PhoneVerificationService(
        stores.threepids, stores.users, sender, limiter, clock, cfg.otp
    )
    uia = UiaService(
        stores.uia,
        stores.users,
        stores.registration_tokens,
        stores.threepids,
        hasher,
        clock,
        server_name=cfg.server_name,
        session_lifetime_ms=int(cfg.auth.uia_session_lifetime_s * 1000),
    )
    auth = AuthService(
        stores.users,
        stores.tokens,
        stores.devices,
        hasher,
        limiter,
        clock,
        server_name=cfg.server_name,
        config=cfg.auth,
    )
    registration = RegistrationService(
        stores.users,
        stores.registration_tokens,
        auth,
        uia,
        hasher,
        clock,
        server_name=cfg.server_name,
        config=cfg.registration,
        password_min_length=cfg.auth.password_min_length,
        phone_signup=cfg.otp.enabled,
    )
    account = AccountService(
        stores.users,
        auth,
        phones,
        hasher,
        clock,
        password_min_length=cfg.auth.password_min_length,
    )
    apis: list[object] = [
        RegisterApi(
            registration, uia, phones, server_name=cfg.server_name, max_body_bytes=max_body
        ),
        LoginApi(auth, server_name=cfg.server_name, max_body_bytes=max_body),
        AccountApi(account, uia, phones, max_body_bytes=max_body),
        RegistrationTokensAdminApi(registration, max_body_bytes=max_body),
    ]
    return _Accounts(auth, uia, phones, registration, apis, http)


async def _run_accounts_background(
    accounts: _Accounts, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Session expiry and last-seen flushing; closes the SMS gateway client when cancelled."""
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(accounts.uia.run_expiry)
            await nursery.start(accounts.phones.run_expiry)
            await nursery.start(accounts.auth.run_last_seen_flusher)
            task_status.started()
    finally:
        if accounts.http is not None:
            with trio.CancelScope(shield=True):
                await accounts.http.aclose()


async def register_user(cfg: Config, username: str, password: str, *, admin: bool) -> str:
    """Create an account from the command line (``homeserver register-user``), any policy.

    Raises:
        MatrixError: ``M_INVALID_USERNAME``, ``M_USER_IN_USE`` or ``M_WEAK_PASSWORD``.
    """
    cfg.resolve_path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
    await migrate(cfg.database_url)
    async with Database.open(cfg.database_url, pool_size=1) as db:
        clock = SystemClock()
        limiter = RateLimiter({}, clock, enabled=False)
        accounts = _accounts(cfg, open_stores(db), clock, limiter)
        try:
            return await accounts.registration.create_user_as_operator(
                username, password, admin=admin
            )
        finally:
            if accounts.http is not None:
                await accounts.http.aclose()


# --- account surface (issue 5) ------------------------------------------------------------------


def _account_surface_apis(
    cfg: Config, stores: Stores, clock: Clock, uia: UiaService, notifier: Notifier
) -> dict[str, list[object]]:
    """Devices, profiles, account data, tags, capabilities, OpenID and the user directory."""
    max_body = cfg.limits.max_request_body_bytes
    account_data = AccountDataService(stores.account_data, notifier)
    openid = OpenIdService(stores.openid, clock, cfg.server_name)
    return {
        "client": [
            DevicesApi(DeviceService(stores.devices), uia, max_body),
            ProfileApi(ProfileService(stores.users, stores.profiles, cfg.server_name), max_body),
            AccountDataApi(account_data, max_body),
            TagsApi(account_data, max_body),
            CapabilitiesApi(default_room_version=cfg.default_room_version, change_password=True),
            OpenIdApi(openid),
            UserDirectoryApi(UserDirectoryService(stores.user_directory)),
        ],
        "federation": [FederationOpenIdApi(openid)],
    }


# --- rooms (issue 6) ----------------------------------------------------------------------------


def _rooms_apis(
    cfg: Config, stores: Stores, clock: Clock, signing_key: SigningKey, notifier: Notifier
) -> dict[str, list[object]]:
    """Room creation, the event creation path, membership, state and history."""
    creator = EventCreationService(
        stores.events, signing_key, clock, notifier, server_name=cfg.server_name
    )
    rooms = RoomService(
        stores.events,
        creator,
        server_name=cfg.server_name,
        default_room_version=cfg.default_room_version,
    )
    return {"client": [RoomsApi(rooms, cfg.limits.max_request_body_bytes)]}


# --- end rooms ----------------------------------------------------------------------------------


# --- media (issue 9) -----------------------------------------------------------------------------

# --- end media (issue 9) -------------------------------------------------------------------------


# --- e2ee (issue 8) ------------------------------------------------------------------------------

# --- end e2ee (issue 8) --------------------------------------------------------------------------


# --- sync and filters (issue 7) ------------------------------------------------------------------

# --- end sync and filters (issue 7) --------------------------------------------------------------


# --- typing, receipts, presence (issue 7) --------------------------------------------------------

# --- end typing, receipts, presence (issue 7) ----------------------------------------------------


# --- room directory and upgrades (issue 6) -------------------------------------------------------

# --- end room directory and upgrades (issue 6) ---------------------------------------------------


# --- rooms access (issue 6) ----------------------------------------------------------------------

# --- end rooms access (issue 6) ------------------------------------------------------------------


# --- registration lock (issue 5) -----------------------------------------------------------------

# --- end registration lock (issue 5) -------------------------------------------------------------


async def serve_homeserver(
    cfg: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    task_status: trio.TaskStatus[list[Bound]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the homeserver until ``shutdown_trigger`` returns, then stop gracefully.

    Args:
        cfg: the loaded configuration.
        shutdown_trigger: awaited by each listener; when it returns, shutdown begins.
        task_status: receives the bound listener addresses once serving.
    """
    db_url = cfg.database_url
    cfg.resolve_path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
    await migrate(db_url)
    signing_key: SigningKey = await trio.to_thread.run_sync(
        load_or_create_signing_key, cfg.resolve_path(cfg.signing_key_path), cfg.server_name
    )
    logger.info("server %s, signing key %s", cfg.server_name, signing_key.key_id)

    async with Database.open(db_url, pool_size=cfg.database.pool_size) as db:
        stores = open_stores(db)
        clock = SystemClock()
        rl = cfg.rate_limits
        rate_limiter = RateLimiter(
            {
                "client_default": rl.client_default,
                "login": rl.login,
                "registration": rl.registration,
                "message": rl.message,
                "sms_per_number": rl.sms_per_number,
                "sms_per_ip": rl.sms_per_ip,
            },
            clock,
            enabled=rl.enabled,
        )
        metrics = HttpMetrics(pool_usage=lambda: (db.pool_stats().in_use, db.pool_stats().size))
        health = HealthService({"database": db.ping}, _with_timeout)

        accounts = _accounts(cfg, stores, clock, rate_limiter)
        gate = RequestGate(accounts.auth, rate_limiter)
        notifier = InProcessNotifier((await stores.streams.current_token()).positions)
        account_surface = _account_surface_apis(cfg, stores, clock, accounts.uia, notifier)
        rooms = _rooms_apis(cfg, stores, clock, signing_key, notifier)  # rooms (issue 6)
        # wiring: media (issue 9)
        # wiring: e2ee (issue 8)
        # wiring: sync and filters (issue 7)
        # wiring: typing, receipts, presence (issue 7)
        # wiring: room directory and upgrades (issue 6)
        # wiring: rooms access (issue 6)
        # wiring: registration lock (issue 5)

        apis: dict[str, list[object]] = {
            "client": [
                VersionsApi(),
                *accounts.apis,
                *account_surface["client"],
                *rooms["client"],  # rooms (issue 6)
            ],
            "federation": [*account_surface["federation"]],
            "media": [],
            "health": [HealthApi(health)],
            "metrics": [MetricsApi(metrics)],
        }

        async with trio.open_nursery() as background:
            await background.start(_run_accounts_background, accounts)
            bound: list[Bound] = []
            async with trio.open_nursery() as servers:
                for listener in cfg.listeners:
                    app = build_asgi_app(
                        _apis_for(listener.resources, apis),
                        max_body_bytes=cfg.limits.max_request_body_bytes,
                        gate=gate,
                    )
                    asgi = ObservedApp(app, metrics, cfg.cors.allowed_origins)  # type: ignore[arg-type]
                    urls = await servers.start(
                        partial(
                            hypercorn.trio.serve,
                            asgi,  # type: ignore[arg-type]
                            _hypercorn_config(cfg, listener),
                            shutdown_trigger=shutdown_trigger,
                        )
                    )
                    bound.append(Bound(listener, list(urls)))
                    logger.info(
                        "listening on %s (%s)", ", ".join(urls), ", ".join(listener.resources)
                    )
                task_status.started(bound)
            logger.info("listeners stopped; stopping background tasks")
            background.cancel_scope.cancel()
    logger.info("database closed; shutdown complete")
