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
from homeserver.storage.events import EventStore  # rooms (0004)
from homeserver.storage.migrate import SchemaOutOfDate, check_schema, migrate
from homeserver.storage.openid import OpenIdTokenStore
from homeserver.storage.profile import ProfileStore
from homeserver.storage.registration_tokens import (
    RegistrationTokenExists,
    RegistrationTokenRow,
    RegistrationTokenStore,
)
from homeserver.storage.stream_ids import StreamIdGenerator
from homeserver.storage.threepids import ThreepidSessionRow, ThreepidStore
from homeserver.storage.tokens import TokenStore
from homeserver.storage.uia import UiaStore
from homeserver.storage.user_directory import UserDirectoryStore
from homeserver.storage.users import PhoneInUse, UserIdTaken, UserRow, UserStore

__all__ = [
    "Conn",
    "Database",
    "DatabaseUnavailable",
    "EventStore",
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
    # --- e2ee (0006)
    # --- filters (0007)
    # --- receipts_presence (0008)
    # --- room_directory (0009)
    # --- rooms_access (0010)
    # --- registration_lock (0011)
    # --- sync (0012)


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
        # --- e2ee (0006)
        # --- filters (0007)
        # --- receipts_presence (0008)
        # --- room_directory (0009)
        # --- rooms_access (0010)
        # --- registration_lock (0011)
        # --- sync (0012)
    )
