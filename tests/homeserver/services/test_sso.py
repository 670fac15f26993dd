"""Login tokens (signed, single use, expiring), the CAS user name → localpart mapping and the
CAS 2.0 answer parser (SQLite and PostgreSQL for the spent-token store).

Spec: client-server-api/_index.md › Login (``m.login.token``), Client login via SSO.
"""

from __future__ import annotations

import pytest

from homeserver.clock import FakeClock
from homeserver.errors import Forbidden
from homeserver.services.sso import (
    LoginTokens,
    add_query,
    map_username_to_localpart,
    parse_cas_response,
)
from homeserver.storage.db import Database
from homeserver.storage.spent_credentials import SpentCredentialStore


async def test_a_token_logs_in_once(db: Database) -> None:
    clock = FakeClock()
    tokens = LoginTokens(SpentCredentialStore(db), clock, lifetime_ms=120_000)
    token = tokens.issue("@a:x")
    assert await tokens.consume(token) == "@a:x"
    with pytest.raises(Forbidden):
        await tokens.consume(token)
    # two tokens of one user are independent
    t1, t2 = tokens.issue("@a:x"), tokens.issue("@a:x")
    assert t1 != t2
    assert await tokens.consume(t2) == "@a:x"
    assert await tokens.consume(t1) == "@a:x"


async def test_expired_forged_and_foreign_tokens_are_refused(db: Database) -> None:
    clock = FakeClock()
    spent = SpentCredentialStore(db)
    tokens = LoginTokens(spent, clock, lifetime_ms=120_000, secret=b"k" * 32)
    old = tokens.issue("@a:x")
    clock.advance(119)
    fresh = tokens.issue("@a:x")
    clock.advance(1)
    with pytest.raises(Forbidden):
        await tokens.consume(old)  # at its expiry
    assert await tokens.consume(fresh) == "@a:x"
    # another secret (another server) signed it
    other = LoginTokens(spent, clock, secret=b"z" * 32)
    with pytest.raises(Forbidden):
        await tokens.consume(other.issue("@a:x"))
    # the payload changed under the signature
    token = tokens.issue("@a:x")
    forged = LoginTokens(spent, clock, secret=b"k" * 32).issue("@b:x").split(".")[0]
    with pytest.raises(Forbidden):
        await tokens.consume(forged + "." + token.split(".")[1])
    for bad in ("", ".", "abc", "a.b.c", "!!.??", "x" * 5000):
        with pytest.raises(Forbidden):
            await tokens.consume(bad)


@pytest.mark.parametrize(
    "name, localpart",
    [
        ("alice", "alice"),
        ("cas_user!", "cas_user=21"),
        ("Bob.Smith", "bob.smith"),
        ("_admin", "=5fadmin"),
        ("jürgen", "j=c3=bcrgen"),
        ("a b@c", "a=20b=40c"),
    ],
)
def test_user_name_mapping(name: str, localpart: str) -> None:
    assert map_username_to_localpart(name) == localpart


def test_parse_cas_response() -> None:
    ok = parse_cas_response(
        b"<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>"
        b"<cas:authenticationSuccess><cas:user> u1 </cas:user><cas:attributes>"
        b"<cas:role>a</cas:role><cas:role>b</cas:role></cas:attributes>"
        b"</cas:authenticationSuccess></cas:serviceResponse>"
    )
    assert ok.user == "u1" and ok.attributes == {"role": ["a", "b"]}
    for bad in (
        b"not xml",
        b"<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'/>",
        b"<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>"
        b"<cas:authenticationSuccess><cas:user></cas:user></cas:authenticationSuccess>"
        b"</cas:serviceResponse>",
        b"<serviceResponse><authenticationSuccess><user>u</user></authenticationSuccess>"
        b"</serviceResponse>",
    ):
        with pytest.raises(Forbidden):
            parse_cas_response(bad)


def test_add_query() -> None:
    assert add_query("https://c/x", loginToken="t") == "https://c/x?loginToken=t"
    assert add_query("https://c/x?p=1#f", loginToken="t") == "https://c/x?p=1&loginToken=t#f"
