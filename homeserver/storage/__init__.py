"""Storage: the only package that runs SQL.

Layering inside the package (lower never imports higher)::

    schema  ←  db  ←  stream_ids, users, ...(one store per domain)  ←  this module (Stores)
                 ↖  migrate

``db.Database`` is the one transaction API; each store takes it in its constructor and runs one
unit of work per method. Stores never import each other: services compose them. ``Stores`` is the
bundle ``app.py`` builds with :func:`open_stores` and hands to the services.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.db import (
    Conn,
    Database,
    DatabaseUnavailable,
    ForeignKeyViolation,
    IntegrityError,
    Params,
    PoolStats,
    Row,
    Statement,
    StorageError,
    TransactionConflict,
    UniqueViolation,
    UnitOfWorkError,
)
from homeserver.storage.devices import DeviceStore
from homeserver.storage.e2ee_keys import E2eeKeyStore  # e2ee (0006)
from homeserver.storage.events import EventStore  # rooms (0004)
from homeserver.storage.filters import FilterStore  # filters (0007)
from homeserver.storage.key_backup import KeyBackupStore  # e2ee (0006)
from homeserver.storage.media import MediaStore  # media (0005)
from homeserver.storage.migrate import SchemaOutOfDate, check_schema, migrate
from homeserver.storage.openid import OpenIdTokenStore
from homeserver.storage.presence import PresenceStore  # receipts_presence (0008)
from homeserver.storage.profile import ProfileStore
from homeserver.storage.receipts import ReceiptStore  # receipts_presence (0008)
from homeserver.storage.registration_lock import RegistrationLockStore  # registration_lock (0011)
from homeserver.storage.registration_tokens import (
    RegistrationTokenExists,
    RegistrationTokenRow,
    RegistrationTokenStore,
)
from homeserver.storage.relations import RelationStore  # relations (0013)
from homeserver.storage.reports import ReportStore  # reports (0015)
from homeserver.storage.room_access import RoomAccessStore  # rooms_access (0010)
from homeserver.storage.room_aliases import RoomAliasStore  # room_directory (0009)
from homeserver.storage.room_directory import RoomDirectoryStore  # room_directory (0009)
from homeserver.storage.search import SearchStore  # search (0014)
from homeserver.storage.spent_credentials import SpentCredentialStore  # registration_lock (0011)
from homeserver.storage.stream_ids import StreamIdGenerator
from homeserver.storage.sync import SyncStore  # sync (0012)
from homeserver.storage.threepids import ThreepidSessionRow, ThreepidStore
from homeserver.storage.to_device import ToDeviceStore  # e2ee (0006)
from homeserver.storage.tokens import TokenStore
from homeserver.storage.uia import UiaStore
from homeserver.storage.user_directory import UserDirectoryStore
from homeserver.storage.user_threepids import UserThreepidStore
from homeserver.storage.users import PhoneInUse, UserIdTaken, UserRow, UserStore

__all__ = [
    "Conn",
    "Database",
    "DatabaseUnavailable",
    "EventStore",
    "FilterStore",
    "ForeignKeyViolation",
    "IntegrityError",
    "Params",
    "PhoneInUse",
    "PoolStats",
    "RegistrationTokenExists",
    "RegistrationTokenRow",
    "RegistrationTokenStore",
    "Row",
    "SchemaOutOfDate",
    "Statement",
    "StorageError",
    "Stores",
    "StreamIdGenerator",
    "SyncStore",
    "ThreepidSessionRow",
    "ThreepidStore",
    "TokenStore",
    "TransactionConflict",
    "UiaStore",
    "UniqueViolation",
    "UnitOfWorkError",
    "UserIdTaken",
    "UserRow",
    "UserStore",
    "check_schema",
    "migrate",
    "open_stores",
]


@dataclass(frozen=True, slots=True)
class Stores:
    """Every store, for the composition root. Add one field per new store."""

    users: UserStore
    streams: StreamIdGenerator
    # --- accounts
    tokens: TokenStore
    uia: UiaStore
    registration_tokens: RegistrationTokenStore
    threepids: ThreepidStore
    # --- account surface (0003)
    devices: DeviceStore
    profiles: ProfileStore
    account_data: AccountDataStore
    openid: OpenIdTokenStore
    user_directory: UserDirectoryStore
    # --- rooms (0004)
    events: EventStore
    # --- media (0005)
    media: MediaStore
    # --- e2ee (0006)
    e2ee_keys: E2eeKeyStore
    key_backup: KeyBackupStore
    to_device: ToDeviceStore
    # --- filters (0007)
    filters: FilterStore
    # --- receipts_presence (0008)
    receipts: ReceiptStore
    presence: PresenceStore
    # --- room_directory (0009)
    room_aliases: RoomAliasStore
    room_directory: RoomDirectoryStore
    # --- rooms_access (0010)
    room_access: RoomAccessStore
    # --- registration_lock (0011)
    registration_locks: RegistrationLockStore
    spent_credentials: SpentCredentialStore
    # --- sync (0012)
    sync: SyncStore
    # --- relations (0013)
    relations: RelationStore
    # --- search (0014)
    search: SearchStore
    # --- reports (0015)
    reports: ReportStore
    # --- email_threepids (0022)
    user_threepids: UserThreepidStore


def open_stores(db: Database) -> Stores:
    """Build every store over ``db``."""
    return Stores(
        users=UserStore(db),
        streams=StreamIdGenerator(db),
        # --- accounts
        tokens=TokenStore(db),
        uia=UiaStore(db),
        registration_tokens=RegistrationTokenStore(db),
        threepids=ThreepidStore(db),
        # --- account surface (0003)
        devices=DeviceStore(db),
        profiles=ProfileStore(db),
        account_data=AccountDataStore(db),
        openid=OpenIdTokenStore(db),
        user_directory=UserDirectoryStore(db),
        # --- rooms (0004)
        events=EventStore(db),
        # --- media (0005)
        media=MediaStore(db),
        # --- e2ee (0006)
        e2ee_keys=E2eeKeyStore(db),
        key_backup=KeyBackupStore(db),
        to_device=ToDeviceStore(db),
        # --- filters (0007)
        filters=FilterStore(db),
        # --- receipts_presence (0008)
        receipts=ReceiptStore(db),
        presence=PresenceStore(db),
        # --- room_directory (0009)
        room_aliases=RoomAliasStore(db),
        room_directory=RoomDirectoryStore(db),
        # --- rooms_access (0010)
        room_access=RoomAccessStore(db),
        # --- registration_lock (0011)
        registration_locks=RegistrationLockStore(db),
        spent_credentials=SpentCredentialStore(db),
        # --- sync (0012)
        sync=SyncStore(db),
        # --- relations (0013)
        relations=RelationStore(db),
        # --- search (0014)
        search=SearchStore(db),
        # --- reports (0015)
        reports=ReportStore(db),
        # --- email_threepids (0022)
        user_threepids=UserThreepidStore(db),
    )
