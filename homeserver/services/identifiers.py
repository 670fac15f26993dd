"""User identifiers, phone numbers and email addresses, as login and UIA receive them.

Spec: client-server-api/_index.md › Identifier types (``m.id.user``, ``m.id.thirdparty``,
``m.id.phone``) and the 3PID appendix (msisdn: the number in international form, digits only).

Phone numbers are kept in E.164 form with the ``+`` (``+4915123456789``) everywhere inside the
server; the spec's ``msisdn`` address (digits only) is made at the API edge by
:func:`msisdn_address`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers

from homeserver.errors import BadJson, Codes, InvalidParam, MatrixError
from homeserver.storage.user_threepids import UserThreepidStore
from homeserver.storage.users import UserRow, UserStore

__all__ = [
    "InvalidPhoneNumber",
    "PhoneIdentifier",
    "ThirdPartyIdentifier",
    "UserIdIdentifier",
    "UserIdentifier",
    "canonical_email",
    "e164_from_msisdn",
    "find_user",
    "msisdn_address",
    "normalize_phone",
    "parse_identifier",
    "region_of",
]


@dataclass(frozen=True, slots=True)
class UserIdIdentifier:
    """``m.id.user``: a full user ID or a localpart."""

    user: str


@dataclass(frozen=True, slots=True)
class PhoneIdentifier:
    """``m.id.phone``: a number as typed, and the country to read it in; or an E.164 number."""

    e164: str


@dataclass(frozen=True, slots=True)
class ThirdPartyIdentifier:
    """``m.id.thirdparty`` with a medium other than msisdn (email)."""

    medium: str
    address: str


UserIdentifier = UserIdIdentifier | PhoneIdentifier | ThirdPartyIdentifier


class InvalidPhoneNumber(MatrixError):
    """The phone number cannot be parsed or is not a possible number."""

    def __init__(self, msg: str = "Invalid phone number") -> None:
        super().__init__(400, Codes.INVALID_PARAM, msg)


def normalize_phone(country: str | None, phone: str) -> str:
    """The E.164 form (``+4915123456789``) of ``phone`` as dialled from ``country``.

    Raises:
        InvalidPhoneNumber: it cannot be parsed or is not a valid number.
    """
    region = country.upper() if country else None
    try:
        parsed = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumber() from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber()
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def e164_from_msisdn(address: str) -> str:
    """An msisdn address (digits, the spec's canonical form, ``+`` tolerated) as E.164."""
    digits = address.lstrip("+")
    if not re.fullmatch(r"[1-9][0-9]{5,14}", digits):
        raise InvalidPhoneNumber()
    return normalize_phone(None, "+" + digits)


def msisdn_address(e164: str) -> str:
    """The spec's msisdn address form (digits only) of an E.164 number."""
    return e164.lstrip("+")


def canonical_email(address: str) -> str:
    """The case-folded form of an email address, as Synapse keeps them.

    Raises:
        InvalidParam: not ``local@domain`` (both parts non-empty, no whitespace, at most 254
            characters).
    """
    address = address.strip()
    local, sep, domain = address.rpartition("@")
    if (
        not sep
        or not local
        or not domain
        or len(address) > 254
        or any(c.isspace() or not c.isprintable() for c in address)
    ):
        raise InvalidParam("Invalid email address")
    return f"{local.casefold()}@{domain.casefold()}"


def region_of(e164: str) -> str | None:
    """The ISO 3166-1 alpha-2 region of an E.164 number (``None`` for non-geographic ones)."""
    region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    return region if region and region != "001" else None


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise BadJson(f"identifier.{key} must be a non-empty string")
    return value


def parse_identifier(body: Mapping[str, Any]) -> UserIdentifier:
    """The user identifier of a ``/login`` body or an ``m.login.password`` auth dict.

    Accepts ``identifier`` (``m.id.user``, ``m.id.phone``, ``m.id.thirdparty``) and the
    deprecated top-level ``user`` / ``medium`` + ``address``.

    Raises:
        BadJson: the identifier is missing or malformed.
        InvalidParam: an unknown identifier type.
        InvalidPhoneNumber: a phone identifier that is not a valid number.
    """
    ident = body.get("identifier")
    if ident is None:
        if isinstance(body.get("user"), str) and body["user"]:
            return UserIdIdentifier(body["user"])
        if "medium" in body and "address" in body:
            ident = {
                "type": "m.id.thirdparty",
                "medium": body["medium"],
                "address": body["address"],
            }
        else:
            raise BadJson("identifier is required")
    if not isinstance(ident, dict):
        raise BadJson("identifier must be an object")
    kind = ident.get("type")
    if kind == "m.id.user":
        return UserIdIdentifier(_str(ident, "user"))
    if kind == "m.id.phone":
        country = ident.get("country")
        if country is not None and not isinstance(country, str):
            raise BadJson("identifier.country must be a string")
        return PhoneIdentifier(normalize_phone(country, _str(ident, "phone")))
    if kind == "m.id.thirdparty":
        medium = _str(ident, "medium")
        address = _str(ident, "address")
        if medium == "msisdn":
            return PhoneIdentifier(e164_from_msisdn(address))
        return ThirdPartyIdentifier(medium, address)
    if not isinstance(kind, str):
        raise BadJson("identifier.type must be a string")
    raise InvalidParam(f"Unknown identifier type {kind!r}")


async def find_user(
    users: UserStore,
    server_name: str,
    identifier: UserIdentifier,
    threepids: UserThreepidStore | None = None,
) -> UserRow | None:
    """The local account an identifier names, or ``None``.

    ``m.id.user`` takes a localpart or a full user ID; localparts are matched in lower case,
    as registration stores them. An email address (``m.id.thirdparty``) is looked up
    case-folded in ``threepids`` (the addresses bound to accounts) when given.
    """
    if isinstance(identifier, PhoneIdentifier):
        return await users.get_user_by_phone(identifier.e164)
    if isinstance(identifier, ThirdPartyIdentifier):
        if identifier.medium != "email" or threepids is None:
            return None
        try:
            address = canonical_email(identifier.address)
        except InvalidParam:
            return None
        bound = await threepids.owner("email", address)
        return None if bound is None else await users.get_user(bound.user_id)
    user = identifier.user
    if user.startswith("@"):
        localpart, sep, server = user[1:].partition(":")
        if not sep or server != server_name:
            return None
    else:
        localpart = user
    if not localpart or any(c.isspace() or not c.isprintable() for c in localpart):
        return None  # no account has one (registration refuses them): ``alice\n`` is not alice
    found = await users.get_user(f"@{localpart}:{server_name}")
    if found is None and localpart != localpart.lower():
        found = await users.get_user(f"@{localpart.lower()}:{server_name}")
    return found
