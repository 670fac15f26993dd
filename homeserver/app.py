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

import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import hypercorn.trio
import trio
from hypercorn.config import Config as HypercornConfig

from federation.client import FederationClient, FederationTransport  # federation: keys
from federation.core.signing import SigningKey
from homeserver.api._http import ObservedApp, RequestGate, build_asgi_app
from homeserver.api.admin.media import MediaAdminApi  # media
from homeserver.api.admin.register import SharedSecretRegisterApi  # registration lock
from homeserver.api.admin.registration_tokens import RegistrationTokensAdminApi
from homeserver.api.client.account import AccountApi
from homeserver.api.client.account_data import AccountDataApi
from homeserver.api.client.capabilities import CapabilitiesApi
from homeserver.api.client.devices import DevicesApi
from homeserver.api.client.directory import DirectoryApi  # room directory
from homeserver.api.client.filter import FilterApi  # sync and filters
from homeserver.api.client.identity import (  # identity server
    ExchangeThirdPartyInviteApi,
    IdentityBindApi,
    OnBindApi,
)
from homeserver.api.client.keys import KeysApi  # e2ee
from homeserver.api.client.legacy import (  # the r0 API
    EventStreamEndpoint,
    InitialSyncEndpoint,
    LegacyEventApi,
    LegacyPrefix,
    LegacySendApi,
    RoomInitialSyncEndpoint,
)
from homeserver.api.client.login import LoginApi
from homeserver.api.client.notifications import NotificationsApi  # pushers
from homeserver.api.client.openid import OpenIdApi
from homeserver.api.client.presence import PresenceApi  # typing, receipts, presence
from homeserver.api.client.profile import ProfileApi
from homeserver.api.client.push_rules import PushRulesApi
from homeserver.api.client.pushers import PushersApi  # pushers
from homeserver.api.client.receipts import ReceiptsApi  # typing, receipts, presence
from homeserver.api.client.register import RegisterApi
from homeserver.api.client.registration_lock import RegistrationLockApi  # registration lock
from homeserver.api.client.relations import RelationsApi  # relations and threads
from homeserver.api.client.reporting import ReportingApi
from homeserver.api.client.room_keys import RoomKeysApi  # e2ee
from homeserver.api.client.room_upgrade import RoomUpgradeApi  # room upgrades
from homeserver.api.client.rooms import RoomsApi, SendEventEndpoint  # rooms
from homeserver.api.client.search import SearchApi
from homeserver.api.client.space_hierarchy import SpaceHierarchyApi
from homeserver.api.client.sso import SsoApi  # single sign-on
from homeserver.api.client.sync import PeekApi, SyncEndpoint
from homeserver.api.client.tags import TagsApi
from homeserver.api.client.to_device import ToDeviceApi  # e2ee
from homeserver.api.client.typing import TypingApi  # typing, receipts, presence
from homeserver.api.client.user_directory import UserDirectoryApi
from homeserver.api.client.versions import VersionsApi
from homeserver.api.client.well_known import WellKnownApi  # registration lock
from homeserver.api.federation._auth import FederationAuthenticator  # federation: keys
from homeserver.api.federation.invites import InvitesApi  # federation: remote joins, invites
from homeserver.api.federation.keys import ServerKeysApi  # federation: keys
from homeserver.api.federation.memberships import MembershipsApi  # federation: inbound
from homeserver.api.federation.openid import FederationOpenIdApi
from homeserver.api.federation.query import FederationQueryApi
from homeserver.api.federation.room_graph import RoomGraphApi  # federation: inbound
from homeserver.api.federation.transactions import TransactionsApi  # federation: inbound
from homeserver.api.federation.user_keys import UserKeysApi  # federation: EDUs and devices
from homeserver.api.federation.version import FederationVersionApi  # federation: keys
from homeserver.api.media import DownloadApi, ThumbnailApi, UploadApi  # media
from homeserver.api.metrics import HttpMetrics
from homeserver.api.ops import HealthApi, MetricsApi
from homeserver.api.raw import RawEndpoint, RawRoutes
from homeserver.clock import Clock, SystemClock
from homeserver.config import Config, ListenerConfig
from homeserver.keys import load_old_verify_keys, load_or_create_signing_key
from homeserver.services.account import AccountService
from homeserver.services.account_data import AccountDataService
from homeserver.services.auth import AuthService
from homeserver.services.device_lists import AnnouncingDeviceStore, DeviceListAnnouncer
from homeserver.services.devices import DeviceService
from homeserver.services.directory import (  # room directory
    DirectoryService,
    RemoteDirectory,
)
from homeserver.services.e2ee_sync import E2eeSyncSource  # e2ee
from homeserver.services.email import SmtpEmailSender  # email addresses as 3PIDs
from homeserver.services.email_threepids import EmailVerificationService  # email addresses
from homeserver.services.events import EventCreationService  # rooms
from homeserver.services.federation_backfill import Backfiller  # federation: backfill
from homeserver.services.federation_devices import (  # federation: EDUs and devices
    FederatedKeys,
    FederationDevices,
)
from homeserver.services.federation_directory import FederatedDirectory
from homeserver.services.federation_edus import FederationEdus  # federation: EDUs and devices
from homeserver.services.federation_inbound import (  # federation: inbound
    EduRegistry,
    FederationInbound,
    KeyRing,
    NoRemoteRoomGraph,
    RemoteRoomGraph,
)
from homeserver.services.federation_invites import FederationInvites  # federation: invites
from homeserver.services.federation_join_remote import RemoteMemberships  # federation: joins
from homeserver.services.federation_joins import FederationMemberships  # federation: inbound
from homeserver.services.federation_profiles import FederatedProfiles  # federation: profiles
from homeserver.services.federation_remote_graph import ClientRoomGraph  # federation: inbound
from homeserver.services.federation_room_graph import RoomGraphService  # federation: inbound
from homeserver.services.federation_sender import FederationSender  # federation: sender
from homeserver.services.filters import FilterService  # sync and filters
from homeserver.services.health import HealthService
from homeserver.services.identity_server import IdentityServerClient  # identity server
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.key_backup import KeyBackupService  # e2ee
from homeserver.services.keys import KeyService  # e2ee
from homeserver.services.media import MediaService  # media
from homeserver.services.media_blobs import BlobLocks  # media
from homeserver.services.media_retention import MediaRetention  # media
from homeserver.services.notification_counts import NotificationCounts
from homeserver.services.notifier import InProcessNotifier, Notifier
from homeserver.services.openid import OpenIdService
from homeserver.services.otp import PhoneVerificationService
from homeserver.services.passwords import PasswordHasher
from homeserver.services.peeking import PeekService
from homeserver.services.presence import PresenceService  # typing, receipts, presence
from homeserver.services.profile import ProfileService
from homeserver.services.profile_propagation import ProfilePropagator  # rooms access
from homeserver.services.push_rules import PushRulesService
from homeserver.services.push_ruleset import PUSH_RULES_TYPE
from homeserver.services.push_sender import (  # pushers
    HttpPushGateway,
    PushSender,
    PushSettings,
)
from homeserver.services.pushers import PusherService  # pushers
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.receipts import ReceiptsService  # typing, receipts, presence
from homeserver.services.registration import RegistrationService
from homeserver.services.registration_lock import RegistrationLockService  # registration lock
from homeserver.services.relations import RelationsService  # relations and threads
from homeserver.services.reporting import ReportingService
from homeserver.services.room_upgrade import (  # room upgrades
    RoomUpgradeService,
    UserSettingsCarrier,
    check_tombstone,
)
from homeserver.services.rooms import RoomAliases, RoomService  # rooms
from homeserver.services.search import SearchService
from homeserver.services.server_keys import ServerKeys, ServerPolicy  # federation: keys
from homeserver.services.shared_secret_registration import SharedSecretRegistration
from homeserver.services.sms import FileSmsSender, HttpSmsSender, LogSmsSender, SmsSender
from homeserver.services.space_hierarchy import SpaceHierarchyService
from homeserver.services.sso import CasService, LoginTokens  # single sign-on
from homeserver.services.sync import SyncService
from homeserver.services.third_party_invites import ThirdPartyInviteService  # identity server
from homeserver.services.thumbnails import ThumbnailService  # media
from homeserver.services.to_device import ToDeviceService  # e2ee
from homeserver.services.typing import TypingService  # typing, receipts, presence
from homeserver.services.uia import MSISDN, PASSWORD, UiaService  # MSISDN, PASSWORD: e2ee
from homeserver.services.user_directory import UserDirectoryService
from homeserver.services.visibility import HistoryVisibility  # rooms access
from homeserver.storage import Database, Stores, migrate, open_stores
from homeserver.storage.account_data import GLOBAL
from homeserver.storage.events import StoredEvent
from homeserver.storage.federation_devices import FederationDeviceStore  # federation: devices
from homeserver.storage.federation_events import FederationEventStore  # federation: inbound
from homeserver.storage.federation_queue import FederationQueueStore  # federation: sender
from homeserver.storage.media_files import LocalFileStore  # media
from homeserver.storage.pushers import PusherStore  # pushers
from homeserver.storage.server_keys import ServerKeyStore  # federation: keys
from homeserver.streams import StreamName, StreamToken  # the r0 API

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


def _log_request_failure(request_id: str, exc: BaseException) -> None:
    logger.error("request %s failed", request_id, exc_info=exc)


def _apis_for(resources: tuple[str, ...], apis: dict[str, list[object]]) -> list[object]:
    out: list[object] = []
    for r in resources:
        # an API object may serve two resources (OpenID userinfo): routed once per listener
        out.extend(api for api in apis.get(r, []) if not any(api is o for o in out))
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


# --- accounts: registration, login, tokens, UIA, phone verification ------------------------------


@dataclass(frozen=True)
class _Accounts:
    auth: AuthService
    uia: UiaService
    phones: PhoneVerificationService
    registration: RegistrationService
    apis: list[object]
    http: httpx.AsyncClient | None
    registration_lock: RegistrationLockService


# --- single sign-on ------------------------------------------------------------------------------


def _single_sign_on(
    cfg: Config, stores: Stores, clock: Clock, auth: AuthService, uia: UiaService
) -> CasService:
    """CAS single sign-on and login tokens (``cas``, ``login_tokens``)."""
    cas = cfg.cas
    verify: ssl.SSLContext | bool = True
    if cas.enabled and cas.custom_ca_file is not None:
        verify = ssl.create_default_context(cafile=str(cfg.resolve_path(cas.custom_ca_file)))
    if cas.enabled:
        uia.enable_sso()
    tokens = LoginTokens(
        stores.spent_credentials, clock, lifetime_ms=int(cfg.login_tokens.lifetime_s * 1000)
    )
    return CasService(
        verify,
        stores.users,
        stores.profiles,
        auth,
        uia,
        tokens,
        clock,
        server_name=cfg.server_name,
        config=cas,
        service_url=cas.service_url or cfg.public_baseurl or "",
    )


# --- end single sign-on --------------------------------------------------------------------------


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
            method=cfg.otp.gateway_method,
            headers=cfg.otp.gateway_headers,
            body_template=cfg.otp.gateway_body_template,
            retries=cfg.otp.gateway_retries,
            backoff_s=cfg.otp.gateway_retry_backoff_s,
        )
    elif cfg.otp.sender == "log":
        sender = LogSmsSender()
    else:
        sender = FileSmsSender(cfg.resolve_path(cfg.data_dir) / cfg.otp.file_path)
    if cfg.otp.enabled and cfg.otp.sender != "http":
        logger.warning("otp.sender is %r: SMS codes are not sent (development)", cfg.otp.sender)
    phones = PhoneVerificationService(
        stores.threepids, stores.users, sender, limiter, clock, cfg.otp
    )
    # email addresses as third-party identifiers
    emails = EmailVerificationService(
        stores.threepids,
        stores.user_threepids,
        SmtpEmailSender(cfg.email),
        limiter,
        clock,
        cfg.email,
        server_name=cfg.server_name,
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
        email_threepids=stores.user_threepids,
    )
    registration_lock = RegistrationLockService(
        stores.registration_locks, hasher, clock, cfg.registration_lock
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
        spent=stores.spent_credentials,
        phones=phones,
        registration_lock=registration_lock,
        email_threepids=stores.user_threepids,
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
        profiles=stores.profiles,
        emails=emails,
    )
    account = AccountService(
        stores.users,
        auth,
        phones,
        hasher,
        clock,
        password_min_length=cfg.auth.password_min_length,
        emails=emails,
    )
    cas = _single_sign_on(cfg, stores, clock, auth, uia)  # single sign-on
    apis: list[object] = [
        RegisterApi(
            registration,
            uia,
            phones,
            server_name=cfg.server_name,
            max_body_bytes=max_body,
            public_baseurl=cfg.public_baseurl,
            emails=emails,
        ),
        LoginApi(
            auth,
            server_name=cfg.server_name,
            max_body_bytes=max_body,
            sso=cas,  # single sign-on
            get_login_token=cfg.login_tokens.allow_get_token,
        ),
        AccountApi(
            account,
            uia,
            phones,
            max_body_bytes=max_body,
            public_baseurl=cfg.public_baseurl,
            emails=emails,
        ),
        RegistrationTokensAdminApi(registration, max_body_bytes=max_body),
        SsoApi(  # single sign-on
            cas,
            uia,
            allow_get_token=cfg.login_tokens.allow_get_token,
            max_body_bytes=max_body,
        ),
    ]
    return _Accounts(auth, uia, phones, registration, apis, http, registration_lock)


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


# --- account surface ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _AccountSurface:
    profile: ProfileService
    apis: dict[str, list[object]]


def _account_surface(
    cfg: Config,
    stores: Stores,
    clock: Clock,
    uia: UiaService,
    notifier: Notifier,
    *,
    on_global_account_data: Callable[[str, str], None] | None = None,
) -> _AccountSurface:
    """Devices, profiles, account data, tags, capabilities, OpenID and the user directory."""
    max_body = cfg.limits.max_request_body_bytes
    account_data = AccountDataService(
        stores.account_data, notifier, on_global_change=on_global_account_data
    )
    openid = OpenIdService(stores.openid, clock, cfg.server_name)
    # OpenID userinfo is on client listeners too (Synapse's "openid" resource goes with
    # "client"): what the user handed the token to may only know the client URL
    userinfo = FederationOpenIdApi(openid)
    profile = ProfileService(stores.users, stores.profiles, cfg.server_name)
    apis: dict[str, list[object]] = {
        "client": [
            DevicesApi(DeviceService(stores.devices), uia, max_body),
            ProfileApi(profile, max_body),
            AccountDataApi(account_data, max_body),
            TagsApi(account_data, max_body),
            CapabilitiesApi(
                default_room_version=cfg.default_room_version,
                change_password=True,
                get_login_token=cfg.login_tokens.allow_get_token,  # single sign-on
                threepid_changes=cfg.otp.enabled or cfg.email.enabled,
            ),
            OpenIdApi(openid),
            userinfo,
            UserDirectoryApi(
                UserDirectoryService(
                    stores.user_directory,
                    search_all_users=cfg.user_directory.search_all_users,
                )
            ),
        ],
        "federation": [userinfo],
    }
    return _AccountSurface(profile, apis)


# --- rooms --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rooms:
    """The room service, the one event creation path (its per-room locks serialise every write
    into a room, so everything that writes events must use this one), the history-visibility rule
    and the profile → member event propagator."""

    service: RoomService
    creator: EventCreationService
    visibility: HistoryVisibility
    profile_propagator: ProfilePropagator
    apis: list[object]
    #: served as plain ASGI (homeserver/api/raw.py)
    raw: list[RawEndpoint]
    #: relations, threads, bundled aggregations and ``redacted_because`` (``/sync`` adds them)
    relations: RelationsService


def _rooms(
    cfg: Config,
    stores: Stores,
    clock: Clock,
    signing_key: SigningKey,
    notifier: Notifier,
    aliases: RoomAliases | None = None,
    ignored: IgnoredUsers | None = None,
) -> _Rooms:
    """Room creation, the event creation path, membership, state and history.

    ``aliases`` (the room directory) enables ``room_alias_name``, joins and knocks by alias and
    ``visibility: public`` at creation."""
    creator = EventCreationService(
        stores.events, signing_key, clock, notifier, server_name=cfg.server_name
    )
    visibility = HistoryVisibility(stores.room_access)
    rooms = RoomService(
        stores.events,
        creator,
        visibility=visibility,
        clock=clock,
        server_name=cfg.server_name,
        default_room_version=cfg.default_room_version,
        aliases=aliases,
        users=stores.users,
        profiles=stores.profiles,
    )
    relations = RelationsService(
        stores.relations, stores.events, rooms.history, visibility, clock, ignored=ignored
    )
    rooms.history.use_unsigned_source(relations)
    if ignored is not None:
        rooms.history.use_ignored_users(ignored)
    creator.add_content_check(relations.check_new_event)
    return _Rooms(
        rooms,
        creator,
        visibility,
        ProfilePropagator(rooms),
        [
            RoomsApi(rooms, cfg.limits.max_request_body_bytes),
            RelationsApi(relations),
            LegacySendApi(rooms, cfg.limits.max_request_body_bytes),  # the r0 API
            LegacyEventApi(rooms),  # the r0 API
        ],
        [SendEventEndpoint(rooms, cfg.limits.max_request_body_bytes)],
        relations,
    )


# --- end rooms ----------------------------------------------------------------------------------


# --- media ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Media:
    apis: list[object]
    retention: MediaRetention


def _media(cfg: Config, stores: Stores, clock: Clock) -> _Media:
    """The media repository: files under ``data_dir/media.store_path``, APIs, retention loop."""
    root = cfg.resolve_path(cfg.data_dir) / cfg.media.store_path
    files = LocalFileStore(root)
    locks = BlobLocks(stores.media, files)
    thumbnails = ThumbnailService(stores.media, files, locks, clock, cfg.media)
    media = MediaService(
        stores.media,
        files,
        locks,
        thumbnails,
        clock,
        server_name=cfg.server_name,
        config=cfg.media,
    )
    retention = MediaRetention(media, stores.media, files, clock, cfg.media)
    apis: list[object] = [
        UploadApi(media),
        DownloadApi(media),
        ThumbnailApi(media, thumbnails),
        MediaAdminApi(media),
    ]
    return _Media(apis, retention)


# --- end media -----------------------------------------------------------------------------------


# --- e2ee ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _E2ee:
    """Keys, cross-signing, key backup and to-device messages.

    ``sync_source`` is what ``/sync`` reads (``SyncService(e2ee=...)``: lead's wiring).
    """

    keys: KeyService
    to_device: ToDeviceService
    sync_source: E2eeSyncSource
    apis: list[object]


def _e2ee(cfg: Config, stores: Stores, clock: Clock, uia: UiaService, notifier: Notifier) -> _E2ee:
    """``/keys/*``, ``/room_keys/*`` and ``/sendToDevice`` over the shared ``notifier``."""
    max_body = cfg.limits.max_request_body_bytes
    keys = KeyService(
        stores.e2ee_keys, stores.devices, stores.streams, notifier, server_name=cfg.server_name
    )
    limiter = RateLimiter(
        {"to_device": cfg.e2ee.to_device_rate_limit}, clock, enabled=cfg.rate_limits.enabled
    )
    to_device = ToDeviceService(
        stores.to_device,
        notifier,
        limiter,
        clock,
        server_name=cfg.server_name,
        queue_limit=cfg.e2ee.to_device_queue_limit,
    )
    reauth_flows = [[PASSWORD], *([[MSISDN]] if cfg.otp.enabled else [])]
    apis: list[object] = [
        KeysApi(keys, uia, reauth_flows=reauth_flows, max_body_bytes=max_body),
        RoomKeysApi(KeyBackupService(stores.key_backup), max_body_bytes=max_body),
        ToDeviceApi(to_device, max_body_bytes=max_body),
    ]
    return _E2ee(keys, to_device, E2eeSyncSource(keys, to_device), apis)


# --- end e2ee ------------------------------------------------------------------------------------


# --- sync and filters ----------------------------------------------------------------------------


def _filter_apis(cfg: Config, stores: Stores) -> list[object]:
    """Filters: ``POST/GET /user/{userId}/filter`` (the /sync wiring goes beside this)."""
    return [FilterApi(FilterService(stores.filters), cfg.limits.max_request_body_bytes)]


def _sync_endpoint(
    stores: Stores,
    clock: Clock,
    notifier: InProcessNotifier,
    *,
    rooms: _Rooms,
    live: _LiveLayer,
    e2ee: E2eeSyncSource,
    push_rules_changed: list[Callable[[str], None]],
) -> SyncEndpoint:
    """``/sync`` (served without the framework: ``homeserver/api/raw.py``)."""
    sync_store = stores.sync

    async def room_events(
        room_id: str, from_pos: int, to_pos: int, limit: int
    ) -> tuple[list[StoredEvent], bool]:
        window = await sync_store.load_room(room_id, from_pos=from_pos, to_pos=to_pos, limit=limit)
        return window.timeline[:limit], window.exhausted

    async def push_rules(user_id: str) -> Mapping[str, Any] | None:
        return await stores.account_data.get(user_id, GLOBAL, PUSH_RULES_TYPE)

    counts = NotificationCounts(
        room_events, stores.receipts.read_positions, sync_store.push_state, push_rules
    )
    live.receipts.add_read_listener(counts.on_read)
    push_rules_changed.append(counts.rules_changed)
    peeks = PeekService(rooms.service.resolve_room, rooms.visibility, stores.streams, notifier)
    sync = SyncService(
        stores.sync,
        stores.events,
        stores.account_data,
        stores.streams,
        notifier,
        clock,
        visibility=rooms.visibility,
        typing=live.typing,
        receipts=live.receipts,
        presence=live.presence,
        e2ee=e2ee,
        counts=counts,
        ignored=live.ignored,
        unsigned=rooms.relations,  # bundled aggregations, redacted_because
        peeks=peeks,
    )
    return SyncEndpoint(sync, FilterService(stores.filters), [PeekApi(peeks)])


# --- end sync and filters ------------------------------------------------------------------------


# --- typing, receipts, presence ------------------------------------------------------------------


@dataclass(frozen=True)
class _LiveLayer:
    """Typing, receipts and read markers, presence: the services ``/sync`` reads, and their APIs.

    Still to connect outside this section: ``typing=``, ``receipts=``, ``presence=`` of
    :class:`SyncService`; ``RequestGate(..., on_activity=presence.on_activity)``;
    ``presence.on_account_data_changed``
    after global account data writes (last-seen privacy).
    """

    typing: TypingService
    receipts: ReceiptsService
    presence: PresenceService
    apis: list[object]
    #: who each user ignores (``/sync`` timelines and invites)
    ignored: IgnoredUsers

    def global_account_data_changed(self, user_id: str, data_type: str) -> None:
        """After a global account data write: last-seen privacy, ignored users."""
        self.presence.on_account_data_changed(user_id, data_type)
        self.ignored.account_data_changed(user_id, data_type)


def _live_layer(cfg: Config, stores: Stores, clock: Clock, notifier: Notifier) -> _LiveLayer:
    """Build the typing, receipts and presence services over the shared ``notifier``."""
    max_body = cfg.limits.max_request_body_bytes
    typing = TypingService(stores.receipts, notifier, cfg.typing)
    receipts = ReceiptsService(stores.receipts, stores.account_data, notifier, clock)
    presence = PresenceService(
        stores.presence, stores.users, notifier, clock, cfg.presence, server_name=cfg.server_name
    )
    apis: list[object] = [
        TypingApi(typing, cfg.typing, max_body),
        ReceiptsApi(receipts, max_body),
        PresenceApi(presence, max_body),
    ]
    return _LiveLayer(typing, receipts, presence, apis, IgnoredUsers(stores.account_data))


async def _run_live_layer(
    live: _LiveLayer, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Typing timeouts and the presence timers and writer, until cancelled."""
    async with trio.open_nursery() as nursery:
        await nursery.start(live.typing.run)
        await nursery.start(live.presence.run)
        task_status.started()


# --- end typing, receipts, presence --------------------------------------------------------------


# --- room directory and upgrades -----------------------------------------------------------------


def _room_directory(
    cfg: Config, stores: Stores, clock: Clock, *, remote: RemoteDirectory | None
) -> DirectoryService:
    """Aliases and the published room directory (the room service resolves aliases with it);
    ``remote`` asks other servers about theirs."""
    return DirectoryService(
        stores.room_aliases,
        stores.room_directory,
        stores.events,
        clock,
        server_name=cfg.server_name,
        config=cfg.room_directory,
        remote=remote,
    )


def _room_directory_apis(
    cfg: Config,
    stores: Stores,
    directory: DirectoryService,
    creator: EventCreationService,
    notifier: Notifier,
    on_push_rules_change: Callable[[str], None],
) -> dict[str, list[object]]:
    """Alias, directory and upgrade endpoints; hooks the ``m.room.canonical_alias`` and
    ``m.room.tombstone`` checks into the event creation path. ``creator`` must be the one the
    room service uses (its per-room locks serialise every write into a room). An upgrade
    carries the local members' push rules (``on_push_rules_change`` is told), tags and
    ``m.direct`` over to the new room."""
    creator.add_state_check("m.room.canonical_alias", directory.check_canonical_alias)
    creator.add_state_check("m.room.tombstone", check_tombstone)
    directory.set_state_sender(creator)
    max_body = cfg.limits.max_request_body_bytes
    settings = UserSettingsCarrier(
        PushRulesService(stores.account_data, notifier, on_push_rules_change),
        stores.account_data,
        notifier,
    )
    upgrades = RoomUpgradeService(stores.events, creator, directory, settings)
    return {
        "client": [
            DirectoryApi(
                directory,
                max_body,
                public_rooms_without_auth=cfg.room_directory.public_rooms_without_auth,
            ),
            RoomUpgradeApi(upgrades, max_body),
        ]
    }


# --- end room directory and upgrades -------------------------------------------------------------


# --- registration lock ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _RegistrationLock:
    apis: list[object]
    #: for ``/versions``
    unstable_features: dict[str, bool]


def _registration_lock(
    cfg: Config, stores: Stores, clock: Clock, accounts: _Accounts
) -> _RegistrationLock:
    """The registration lock PIN API, shared-secret admin registration and client discovery."""
    max_body = cfg.limits.max_request_body_bytes
    registrar = SharedSecretRegistration(
        accounts.registration,
        accounts.auth,
        stores.profiles,
        clock,
        secret=cfg.registration_shared_secret,
    )
    apis: list[object] = [
        SharedSecretRegisterApi(registrar, server_name=cfg.server_name, max_body_bytes=max_body),
        WellKnownApi(cfg.public_baseurl),
    ]
    if cfg.registration_lock.enabled:
        apis.append(
            RegistrationLockApi(
                accounts.registration_lock,
                accounts.uia,
                accounts.phones,
                max_body_bytes=max_body,
                public_baseurl=cfg.public_baseurl,
            )
        )
    return _RegistrationLock(apis, {"org.example.reglock": cfg.registration_lock.enabled})


# --- end registration lock -----------------------------------------------------------------------


# --- the r0 API: the event stream (r0 paths are rewritten by LegacyPrefix) ----------------------


def _event_stream(stores: Stores, live: _LiveLayer, sync: SyncEndpoint) -> EventStreamEndpoint:
    """``GET /events``: an incremental ``/sync`` flattened, from "now" without ``from``."""

    async def now() -> StreamToken:
        token = await stores.streams.current_token()
        return token.advance(StreamName.TYPING, live.typing.current_position())

    return EventStreamEndpoint(sync, now)


# --- end the r0 API -----------------------------------------------------------------------------


# --- push rules ----------------------------------------------------------------------------------


def _call_each(listeners: list[Callable[[str], None]], user_id: str) -> None:
    for listener in listeners:
        listener(user_id)


def _push_rules_apis(
    cfg: Config, stores: Stores, notifier: Notifier, on_change: Callable[[str], None]
) -> list[object]:
    """``/pushrules/``: the user's push rules, stored as ``m.push_rules`` global account data
    (every change wakes the owner's ``/sync`` through ``notifier``, and ``on_change`` gets the
    user ID)."""
    service = PushRulesService(stores.account_data, notifier, on_change)
    return [PushRulesApi(service, cfg.limits.max_request_body_bytes)]


# --- end push rules ------------------------------------------------------------------------------


# --- pushers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pushers:
    sender: PushSender
    http: httpx.AsyncClient
    apis: list[object]


def _pushers(
    cfg: Config,
    db: Database,
    stores: Stores,
    clock: Clock,
    notifier: InProcessNotifier,
    rooms: _Rooms,
    live: _LiveLayer,
    push_rules_changed: list[Callable[[str], None]],
) -> _Pushers:
    """``/pushers``, ``/pushers/set``, ``/notifications`` and the push sender: told of local
    events at once (the event creation path's listener) and of every other event through the
    notifier's EVENTS position; read receipts send badge updates; changed push rules drop
    their compiled form. Run ``_run_pushers`` in the background nursery."""
    store = PusherStore(db)

    async def read_upto(user_id: str, room_id: str) -> int:
        read = await stores.receipts.read_positions(user_id, room_id)
        return max(read.get("", -1), read.get("main", -1))

    async def push_rules(user_id: str) -> Mapping[str, Any] | None:
        return await stores.account_data.get(user_id, GLOBAL, PUSH_RULES_TYPE)

    push = cfg.push
    verify: ssl.SSLContext | bool = True
    if push.custom_ca_file is not None:
        verify = ssl.create_default_context(cafile=str(cfg.resolve_path(push.custom_ca_file)))
    http = httpx.AsyncClient(
        follow_redirects=False,
        verify=verify,
        limits=httpx.Limits(max_keepalive_connections=20 if push.reuse_connections else 0),
    )
    sender = PushSender(
        store,
        HttpPushGateway(
            http,
            timeout_s=push.gateway_timeout_s,
            allow_private=push.allow_private_destinations,
        ),
        clock,
        server_name=cfg.server_name,
        newest_position=lambda: notifier.position(StreamName.EVENTS),
        push_rules=push_rules,
        read_upto=read_upto,
        settings=PushSettings(
            retry_initial_s=push.retry_initial_s,
            retry_max_s=push.retry_max_s,
            give_up_after_s=push.give_up_after_s,
        ),
    )
    rooms.creator.add_event_listener(sender.on_local_event)
    live.receipts.add_read_listener(sender.on_read)
    push_rules_changed.append(sender.rules_changed)
    service = PusherService(
        store, clock, sender, read_upto, allow_private=push.allow_private_destinations
    )
    apis: list[object] = [
        PushersApi(service, cfg.limits.max_request_body_bytes),
        NotificationsApi(service),
    ]
    return _Pushers(sender, http, apis)


async def _run_pushers(
    pushers: _Pushers, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """The push sender until cancelled; then closes its HTTP client."""
    try:
        await pushers.sender.run(task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            await pushers.http.aclose()


# --- end pushers ---------------------------------------------------------------------------------


# --- identity server -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    http: httpx.AsyncClient
    client_apis: list[object]
    federation_apis: list[object]


def _identity(
    cfg: Config,
    stores: Stores,
    rooms: _Rooms,
    accounts: _Accounts,
    federation_keys: _FederationKeys,
    signing_key: SigningKey,
) -> _Identity:
    """Third-party invites (the rooms API's invite and ``invite_3pid``), ``/account/3pid/bind``
    and ``unbind``, and the identity server's ``/3pid/onbind`` callback (on client listeners
    too, as Synapse). Run ``_run_identity`` in the background nursery (it closes the client)."""
    ident = cfg.identity
    http = httpx.AsyncClient(follow_redirects=False, verify=ident.verify_tls)
    client = IdentityServerClient(
        http,
        timeout_s=ident.request_timeout_s,
        allow_private=ident.allow_private_destinations,
        signing_key=signing_key,
        server_name=cfg.server_name,
    )
    service = ThirdPartyInviteService(
        rooms.service,
        stores.events,
        client,
        server_name=cfg.server_name,
        federation=federation_keys.transport if cfg.federation.enabled else None,
    )
    for api in rooms.apis:
        if isinstance(api, RoomsApi):
            api.use_third_party_invites(service)
    for api in accounts.apis:
        if isinstance(api, AccountApi):
            api.use_identity_servers(service)
    max_body = cfg.limits.max_request_body_bytes
    on_bind = OnBindApi(service, max_body)
    federation_apis: list[object] = [on_bind]
    if cfg.federation.enabled:
        federation_apis.append(
            ExchangeThirdPartyInviteApi(service, federation_keys.auth.authenticate, max_body)
        )
    return _Identity(http, [IdentityBindApi(service, max_body), on_bind], federation_apis)


async def _run_identity(
    identity: _Identity, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Until cancelled; then closes the identity servers' HTTP client."""
    task_status.started()
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await identity.http.aclose()


# --- end identity server -------------------------------------------------------------------------


# --- server-side search and content reports ------------------------------------------------------


def _search_apis(cfg: Config, stores: Stores, rooms: _Rooms) -> list[object]:
    """``POST /search`` over the full-text index, through the history-visibility rule."""
    service = SearchService(stores.search, stores.events, rooms.visibility, rooms.service.history)
    return [SearchApi(service, cfg.limits.max_request_body_bytes)]


def _reporting_apis(cfg: Config, stores: Stores, clock: Clock, rooms: _Rooms) -> list[object]:
    """Event, room and user reports, kept for the operators and logged."""
    service = ReportingService(
        stores.reports,
        stores.events,
        rooms.visibility,
        stores.users,
        clock,
        server_name=cfg.server_name,
    )
    return [ReportingApi(service, cfg.limits.max_request_body_bytes)]


def _space_hierarchy_apis(stores: Stores) -> list[object]:
    """``GET /rooms/{roomId}/hierarchy`` over the rooms this server knows."""
    return [SpaceHierarchyApi(SpaceHierarchyService(stores.events))]


# --- end server-side search and content reports --------------------------------------------------


# --- federation: keys, request authentication, listener ------------------------------------------


@dataclass(frozen=True)
class _FederationKeys:
    """Our signing keys published, other servers' keys (the key ring, also our notary API),
    and the ``X-Matrix`` authenticator every federation route uses.

    The key ring fetches through its own :class:`FederationClient` built here from the
    ``federation`` config; the outbound section may hand it the shared client instead
    (``keys.set_fetcher(client)``). Still to connect outside this section: ``auth`` to the
    inbound federation APIs (``@signed`` routes need ``federation_auth``).
    """

    keys: ServerKeys
    auth: FederationAuthenticator
    policy: ServerPolicy
    apis: list[object]
    #: the outbound client the key ring fetches with (closed when the server stops)
    transport: FederationTransport


def _federation_keys(
    cfg: Config, db: Database, clock: Clock, signing_key: SigningKey
) -> _FederationKeys:
    """The key ring over the ``server_keys`` table, ``/_matrix/key/*`` and the federation
    ``/version``; old keys come from beside the key file (``homeserver/keys.py``)."""
    fed = cfg.federation
    policy = ServerPolicy(
        allowlist=None if fed.domain_allowlist is None else frozenset(fed.domain_allowlist),
        denylist=frozenset(fed.domain_denylist),
    )
    transport = FederationTransport(
        server_name=cfg.server_name,
        signing_key=signing_key,
        ca_path=None if fed.custom_ca_file is None else str(cfg.resolve_path(fed.custom_ca_file)),
        allow_private_destinations=fed.allow_private_destinations,
        domain_allowlist=fed.domain_allowlist,
        domain_denylist=fed.domain_denylist,
        request_timeout=fed.request_timeout_s,
    )
    keys = ServerKeys(
        ServerKeyStore(db),
        FederationClient(transport) if fed.enabled else None,
        clock,
        server_name=cfg.server_name,
        signing_key=signing_key,
        old_keys=load_old_verify_keys(cfg.resolve_path(cfg.signing_key_path)),
        notaries=fed.trusted_key_servers,
        key_validity_period_ms=fed.key_validity_period_s * 1000,
        policy=policy,
    )
    max_body = cfg.limits.max_request_body_bytes
    auth = FederationAuthenticator(
        keys, policy, clock, enabled=fed.enabled, max_body_bytes=max_body
    )
    apis: list[object] = [ServerKeysApi(keys, max_body), FederationVersionApi(_VERSION)]
    return _FederationKeys(keys, auth, policy, apis, transport)


async def _run_federation_keys(
    federation_keys: _FederationKeys,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The key ring's fetches, until cancelled; then closes its client."""
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(federation_keys.keys.run)
            task_status.started()
    finally:
        with trio.CancelScope(shield=True):
            await federation_keys.transport.aclose()


def _distribution_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trio-homeserver")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "0.1.0"


_VERSION = _distribution_version()


# --- end federation: keys, request authentication, listener --------------------------------------


# --- federation: outbound transport and sender ---------------------------------------------------


def _federation_sender(
    cfg: Config,
    db: Database,
    clock: Clock,
    transport: FederationTransport,
    creator: EventCreationService,
    auth: FederationAuthenticator,
) -> FederationSender:
    """The outbound sender over the shared transport: told of every local event (the event
    creation path's listener) and of every server that reaches us (the X-Matrix
    authenticator), which ends that server's back-off. Run it in the background nursery;
    ``send_edu`` is the way typing, receipts and presence reach other servers."""
    sender = FederationSender(
        FederationQueueStore(db),
        FederationClient(transport),
        clock,
        server_name=cfg.server_name,
    )
    creator.add_event_listener(sender.on_local_event)
    auth.add_origin_listener(sender.on_server_contacted)
    return sender


# --- end federation: outbound transport and sender -----------------------------------------------


# --- federation: inbound transactions and the room graph -----------------------------------------


@dataclass(frozen=True)
class _FederationInbound:
    """The inbound side of federation: ``/send/{txnId}`` (the PDU pipeline, and the EDU
    registry where typing, receipts, presence... register their handlers), the room graph
    served to other servers, and remote users' joins, leaves and knocks.

    ``remote`` is the outbound client's room-graph reads (``NoRemoteRoomGraph`` until it is
    wired): without it, missing events and gaps cannot be filled."""

    inbound: FederationInbound
    edus: EduRegistry
    apis: list[object]


def _federation_inbound(
    cfg: Config,
    db: Database,
    stores: Stores,
    clock: Clock,
    notifier: Notifier,
    creator: EventCreationService,
    *,
    keys: KeyRing,
    authenticate: Callable[[], Awaitable[str]],
    remote: RemoteRoomGraph | None = None,
) -> _FederationInbound:
    edus = EduRegistry()
    inbound = FederationInbound(
        stores.events,
        FederationEventStore(db),
        creator,
        notifier,
        keys,
        remote if remote is not None else NoRemoteRoomGraph(),
        edus,
        clock,
        server_name=cfg.server_name,
    )
    max_body = cfg.limits.max_request_body_bytes
    graph = RoomGraphService(stores.events, inbound)
    memberships = FederationMemberships(
        stores.events, inbound, graph, clock, server_name=cfg.server_name
    )
    apis: list[object] = [
        TransactionsApi(inbound, authenticate, max_body),
        RoomGraphApi(
            graph, authenticate, clock, server_name=cfg.server_name, max_body_bytes=max_body
        ),
        MembershipsApi(memberships, authenticate, max_body),
    ]
    return _FederationInbound(inbound, edus, apis)


# --- end federation: inbound transactions and the room graph -------------------------------------


# --- federation: remote joins and invites --------------------------------------------------------


def _federation_memberships(
    cfg: Config,
    db: Database,
    stores: Stores,
    clock: Clock,
    notifier: Notifier,
    rooms: _Rooms,
    inbound: FederationInbound,
    client: FederationClient,
    keys: KeyRing,
    signing_key: SigningKey,
    authenticate: Callable[[], Awaitable[str]],
    profiles: ProfileService,
) -> list[object]:
    """Our users joining rooms hosted elsewhere, invites to and from other servers (the room
    service routes its remote joins and invites here); the inbound invite routes; other
    servers' users' profiles."""
    fed_events = FederationEventStore(db)
    joins = RemoteMemberships(
        stores.events,
        fed_events,
        client,
        keys,
        rooms.creator,
        notifier,
        signing_key,
        clock,
        server_name=cfg.server_name,
    )
    invites = FederationInvites(
        stores.events,
        fed_events,
        inbound,
        client,
        keys,
        notifier,
        signing_key,
        server_name=cfg.server_name,
    )
    rooms.service.use_federation(joins, invites)
    rooms.service.history.use_backfill(
        Backfiller(stores.events, fed_events, client, keys, server_name=cfg.server_name)
    )
    profiles.use_remote(FederatedProfiles(client))
    return [InvitesApi(invites, authenticate, cfg.limits.max_request_body_bytes)]


# --- end federation: remote joins and invites ----------------------------------------------------


# --- federation: EDUs and devices ----------------------------------------------------------------


def _federation_edus(
    cfg: Config,
    db: Database,
    stores: Stores,
    live: _LiveLayer,
    e2ee: _E2ee,
    sender: FederationSender,
    registry: EduRegistry,
) -> FederationEdus:
    """Typing, receipts, presence and to-device messages to and from other servers: listens to
    the live layer's services and the to-device service, and handles their EDUs from ``/send``.
    Run it in the background nursery of the process that runs the sender."""
    edus = FederationEdus(
        live.typing,
        live.receipts,
        e2ee.to_device,
        sender,
        FederationQueueStore(db).joined_servers,
        live.presence,
        stores.e2ee_keys.users_sharing_room,
        server_name=cfg.server_name,
    )
    edus.register(registry)
    return edus


def _federation_devices(
    cfg: Config,
    db: Database,
    stores: Stores,
    notifier: Notifier,
    e2ee: _E2ee,
    sender: FederationSender,
    client: FederationClient,
    registry: EduRegistry,
    authenticate: Callable[[], Awaitable[str]],
) -> tuple[FederationDevices, list[object]]:
    """Device lists and keys across servers: clients' key queries and claims for other
    servers' users go to them; our users' device-list changes go to the servers sharing their
    rooms, other servers' come in as EDUs; ``/user/devices`` and ``/user/keys/*`` serve ours.
    Run the returned service in the background nursery of the process that runs the sender."""
    store = FederationDeviceStore(db)
    remote = FederatedKeys(
        client, store, stores.e2ee_keys.users_sharing_room, server_name=cfg.server_name
    )
    e2ee.keys.use_remote(remote)
    devices = FederationDevices(
        e2ee.keys,
        stores.devices,
        store,
        stores.e2ee_keys.users_sharing_room,
        sender,
        notifier,
        remote,
        server_name=cfg.server_name,
    )
    devices.register(registry)
    e2ee.keys.add_change_listener(devices.wake)
    return devices, [UserKeysApi(devices, authenticate, cfg.limits.max_request_body_bytes)]


# --- end federation: EDUs and devices ------------------------------------------------------------


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
                "email_per_address": rl.email_per_address,  # email addresses as 3PIDs
                "email_per_ip": rl.email_per_ip,
            },
            clock,
            enabled=rl.enabled,
        )
        metrics = HttpMetrics(pool_usage=lambda: (db.pool_stats().in_use, db.pool_stats().size))
        health = HealthService({"database": db.ping}, _with_timeout)

        notifier = InProcessNotifier((await stores.streams.current_token()).positions)
        announcer = DeviceListAnnouncer(
            stores.e2ee_keys.users_sharing_room, stores.streams, notifier
        )
        stores = dataclasses.replace(stores, devices=AnnouncingDeviceStore(db, announcer))
        live = _live_layer(cfg, stores, clock, notifier)  # typing, receipts, presence
        accounts = _accounts(cfg, stores, clock, rate_limiter)
        gate = RequestGate(accounts.auth, rate_limiter, on_activity=live.presence.on_activity)
        account_surface = _account_surface(
            cfg,
            stores,
            clock,
            accounts.uia,
            notifier,
            on_global_account_data=live.global_account_data_changed,
        )
        federation_keys = _federation_keys(cfg, db, clock, signing_key)  # federation: keys
        federation_client = FederationClient(federation_keys.transport)
        directory = _room_directory(  # room directory; other servers' through federation
            cfg,
            stores,
            clock,
            remote=FederatedDirectory(federation_client) if cfg.federation.enabled else None,
        )
        rooms = _rooms(
            cfg, stores, clock, signing_key, notifier, aliases=directory, ignored=live.ignored
        )
        account_surface.profile.add_listener(rooms.profile_propagator)
        identity = _identity(  # identity server
            cfg, stores, rooms, accounts, federation_keys, signing_key
        )
        push_rules_changed: list[Callable[[str], None]] = []
        directory_apis = _room_directory_apis(
            cfg,
            stores,
            directory,
            rooms.creator,
            notifier,
            lambda user_id: _call_each(push_rules_changed, user_id),
        )
        media = _media(cfg, stores, clock)  # wiring: media
        e2ee = _e2ee(cfg, stores, clock, accounts.uia, notifier)  # wiring: e2ee
        announcer.add_deletion_listener(e2ee.keys.devices_deleted)
        announcer.add_deletion_listener(accounts.auth.devices_deleted)
        filter_apis = _filter_apis(cfg, stores)  # sync and filters
        sync_endpoint = _sync_endpoint(
            stores,
            clock,
            notifier,
            rooms=rooms,
            live=live,
            e2ee=e2ee.sync_source,
            push_rules_changed=push_rules_changed,
        )
        registration_lock = _registration_lock(cfg, stores, clock, accounts)
        pushers = _pushers(  # pushers
            cfg, db, stores, clock, notifier, rooms, live, push_rules_changed
        )
        federation_inbound = _federation_inbound(  # federation: inbound transactions
            cfg,
            db,
            stores,
            clock,
            notifier,
            rooms.creator,
            keys=federation_keys.keys,
            authenticate=federation_keys.auth.authenticate,
            remote=(
                ClientRoomGraph(FederationClient(federation_keys.transport))
                if cfg.federation.enabled
                else None
            ),
        )
        federation_sender = _federation_sender(  # federation: outbound sender
            cfg, db, clock, federation_keys.transport, rooms.creator, federation_keys.auth
        )
        federation_memberships: list[object] = []  # federation: remote joins and invites
        if cfg.federation.enabled:
            federation_memberships = _federation_memberships(
                cfg,
                db,
                stores,
                clock,
                notifier,
                rooms,
                federation_inbound.inbound,
                federation_client,
                federation_keys.keys,
                signing_key,
                federation_keys.auth.authenticate,
                account_surface.profile,
            )
        federation_edus = (  # federation: EDUs and devices
            _federation_edus(
                cfg, db, stores, live, e2ee, federation_sender, federation_inbound.edus
            )
            if cfg.federation.enabled
            else None
        )
        federation_devices: FederationDevices | None = None  # federation: EDUs and devices
        federation_device_apis: list[object] = []
        if cfg.federation.enabled:
            federation_devices, federation_device_apis = _federation_devices(
                cfg,
                db,
                stores,
                notifier,
                e2ee,
                federation_sender,
                federation_client,
                federation_inbound.edus,
                federation_keys.auth.authenticate,
            )
            announcer.add_change_listener(federation_devices.wake)

        apis: dict[str, list[object]] = {
            "client": [
                VersionsApi(registration_lock.unstable_features),  # registration lock
                *registration_lock.apis,  # registration lock
                *accounts.apis,
                *account_surface.apis["client"],
                *rooms.apis,  # rooms
                *e2ee.apis,  # e2ee
                *directory_apis["client"],  # room directory and upgrades
                *filter_apis,  # sync and filters
                *sync_endpoint.apis,  # peeking (MSC2753)
                *live.apis,  # typing, receipts, presence
                *_search_apis(cfg, stores, rooms),
                *_reporting_apis(cfg, stores, clock, rooms),
                *_space_hierarchy_apis(stores),
                *pushers.apis,  # pushers
                *identity.client_apis,  # identity server
                *_push_rules_apis(  # push rules
                    cfg,
                    stores,
                    notifier,
                    lambda user_id: _call_each(push_rules_changed, user_id),
                ),
            ],
            "federation": [
                *account_surface.apis["federation"],
                *federation_keys.apis,  # federation: keys, request authentication
                *federation_inbound.apis,  # federation: inbound transactions, room graph
                *federation_memberships,  # federation: remote joins and invites
                *federation_device_apis,  # federation: EDUs and devices
                *identity.federation_apis,  # identity server
                FederationQueryApi(  # federation: profile, alias and room directory queries
                    account_surface.profile,
                    directory,
                    federation_keys.auth.authenticate,
                    server_name=cfg.server_name,
                    max_body_bytes=cfg.limits.max_request_body_bytes,
                ),
            ],
            "media": [*media.apis],  # media
            "health": [HealthApi(health)],
            "metrics": [MetricsApi(metrics)],
        }

        async with trio.open_nursery() as background:
            await background.start(_run_accounts_background, accounts)
            await background.start(_run_federation_keys, federation_keys)  # federation: keys
            if cfg.federation.enabled:  # federation: outbound sender
                await background.start(federation_sender.run)
            if federation_edus is not None:  # federation: EDUs and devices
                await background.start(federation_edus.run)
            if federation_devices is not None:  # federation: EDUs and devices
                await background.start(federation_devices.run)
            await background.start(media.retention.run)  # media
            await background.start(_run_live_layer, live)  # typing, receipts, presence
            await background.start(rooms.profile_propagator.run)
            await background.start(_run_pushers, pushers)  # pushers
            await background.start(_run_identity, identity)  # identity server
            bound: list[Bound] = []
            async with trio.open_nursery() as servers:
                for listener in cfg.listeners:
                    app = build_asgi_app(
                        _apis_for(listener.resources, apis),
                        max_body_bytes=cfg.limits.max_request_body_bytes,
                        gate=gate,
                    )
                    raw: list[RawEndpoint] = (
                        [
                            sync_endpoint,
                            *rooms.raw,
                            _event_stream(stores, live, sync_endpoint),  # the r0 API
                            InitialSyncEndpoint(sync_endpoint),  # the r0 API
                            RoomInitialSyncEndpoint(rooms.service, sync_endpoint),  # the r0 API
                        ]
                        if "client" in listener.resources
                        else []
                    )
                    inner = RawRoutes(
                        app,  # type: ignore[arg-type]
                        raw,
                        accounts.auth,
                        _log_request_failure,
                        rate_limiter=rate_limiter,
                        on_activity=live.presence.on_activity,
                    )
                    asgi = ObservedApp(LegacyPrefix(inner), metrics, cfg.cors.allowed_origins)
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
