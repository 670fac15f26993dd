"""The key ring: fetching, verifying and caching other servers' keys, and the notary."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from federation.core.errors import SignatureError
from federation.core.redaction import redact
from federation.core.room_versions import KNOWN_ROOM_VERSIONS
from federation.core.signing import SigningKey, sign_json, verify_signed_json
from homeserver.clock import FakeClock
from homeserver.config import TrustedKeyServer
from homeserver.keys import OldVerifyKey
from homeserver.services.server_keys import ServerKeys, ServerPolicy
from homeserver.storage import Database
from homeserver.storage.server_keys import ServerKeyRow, ServerKeyStore
from tests.fakes import FakeServerKeyFetcher, make_key_response

OURS = "ours.example"
REMOTE = "remote.example"
NOTARY = "notary.example"
DAY = 86_400_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fetcher() -> FakeServerKeyFetcher:
    return FakeServerKeyFetcher()


@pytest.fixture
def our_key() -> SigningKey:
    return SigningKey.generate("ours1")


def make_ring(db, fetcher, clock, our_key, **kwargs) -> ServerKeys:
    return ServerKeys(
        ServerKeyStore(db),
        fetcher,
        clock,
        server_name=OURS,
        signing_key=our_key,
        key_validity_period_ms=DAY,
        **kwargs,
    )


@pytest.fixture
def ring(db: Database, fetcher, clock, our_key) -> ServerKeys:
    return make_ring(db, fetcher, clock, our_key)


# --- our own keys ------------------------------------------------------------------------------


async def test_own_keys_response_is_self_signed_with_old_keys(db, fetcher, clock, our_key):
    old = SigningKey.generate("old1")
    ring = make_ring(
        db, fetcher, clock, our_key, old_keys={old.key_id: OldVerifyKey(old.verify_key, 1234)}
    )
    body = ring.own_keys_response()
    assert body["server_name"] == OURS
    assert body["valid_until_ts"] == clock.time_ms() + DAY
    assert body["verify_keys"] == {our_key.key_id: {"key": our_key.verify_key.to_base64()}}
    assert body["old_verify_keys"] == {
        old.key_id: {"key": old.verify_key.to_base64(), "expired_ts": 1234}
    }
    verify_signed_json(body, OURS, our_key.verify_key)
    # our own keys need no fetch, old ones only for what they signed before expiring
    keys = await ring.known_keys(OURS, [our_key.key_id, old.key_id], at_ts=clock.time_ms())
    assert keys[our_key.key_id].verify_key == our_key.verify_key
    assert not keys[old.key_id].valid_at(1235, enforce_key_validity=True)
    assert fetcher.calls == []


# --- fetching from the origin ------------------------------------------------------------------


async def test_direct_fetch_is_verified_and_cached(ring, fetcher, clock):
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    keys = await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms())
    assert keys == {key.key_id: key.verify_key}
    # cached: no second fetch
    assert await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms()) == keys
    assert fetcher.calls == [("origin", REMOTE)]


async def test_expired_cache_is_refetched_and_stale_key_kept_for_old_rooms(ring, fetcher, clock):
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + 1000)
    assert await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms())
    clock.advance(10)
    fetcher.origins[REMOTE] = ConnectionError("down")
    # not valid now in the strict sense: refetch, which fails
    assert await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms()) == {}
    assert fetcher.calls == [("origin", REMOTE), ("origin", REMOTE)]
    # but still known (room versions before 5 accept it)
    known = await ring.known_keys(REMOTE, [key.key_id], at_ts=clock.time_ms())
    assert known[key.key_id].valid_at(clock.time_ms(), enforce_key_validity=False)


async def test_validity_is_capped_to_seven_days(ring, fetcher, clock):
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(
        REMOTE, key, valid_until_ts=clock.time_ms() + 365 * DAY
    )
    known = await ring.known_keys(REMOTE, [key.key_id], at_ts=clock.time_ms())
    assert known[key.key_id].valid_until_ts == clock.time_ms() + 7 * DAY


@pytest.mark.parametrize(
    "tamper",
    [
        "wrong_server",
        "bad_signature",
        "unsigned",
        "signed_by_other_key",
        "no_valid_until",
        "not_an_object_keys",
    ],
)
async def test_bad_origin_responses_are_refused(ring, fetcher, clock, tamper):
    key = SigningKey.generate("k1")
    body = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    if tamper == "wrong_server":
        body = make_key_response("other.example", key, valid_until_ts=clock.time_ms() + DAY)
    elif tamper == "bad_signature":
        body["valid_until_ts"] += 1
    elif tamper == "unsigned":
        del body["signatures"]
    elif tamper == "signed_by_other_key":
        del body["signatures"]
        body = sign_json(body, REMOTE, SigningKey.generate("k2"))
    elif tamper == "no_valid_until":
        body = make_key_response(REMOTE, key, valid_until_ts=0)
        body["valid_until_ts"] = "soon"
    else:
        body["verify_keys"] = ["nope"]
    fetcher.origins[REMOTE] = body
    assert await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms()) == {}
    assert await ring.known_keys(REMOTE, [key.key_id], at_ts=0) == {}


async def test_rotation_old_key_becomes_old(ring, fetcher, clock):
    k1 = SigningKey.generate("k1")
    k2 = SigningKey.generate("k2")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, k1, valid_until_ts=clock.time_ms() + 10)
    await ring.verify_keys(REMOTE, [k1.key_id], at_ts=clock.time_ms())
    clock.advance(60)
    expired = clock.time_ms() - 5
    fetcher.origins[REMOTE] = make_key_response(
        REMOTE, k2, valid_until_ts=clock.time_ms() + DAY, old={k1: expired}
    )
    keys = await ring.known_keys(REMOTE, [k1.key_id, k2.key_id], at_ts=clock.time_ms())
    assert keys[k1.key_id].expired_ts == expired
    assert keys[k2.key_id].expired_ts is None
    # the old key verifies what it signed before it expired, nothing after
    assert await ring.verify_keys(REMOTE, [k1.key_id], at_ts=expired - 1)
    assert not await ring.verify_keys(REMOTE, [k1.key_id], at_ts=expired + 1)


async def test_unknown_key_id_and_non_ed25519(ring, fetcher, clock):
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    assert await ring.verify_keys(REMOTE, ["ed25519:nope"], at_ts=clock.time_ms()) == {}
    assert await ring.verify_keys(REMOTE, ["curve25519:x"], at_ts=clock.time_ms()) == {}
    assert fetcher.calls == [("origin", REMOTE)]


async def test_denied_server_is_never_contacted(db, fetcher, clock, our_key):
    ring = make_ring(db, fetcher, clock, our_key, policy=ServerPolicy(denylist=frozenset({REMOTE})))
    assert await ring.verify_keys(REMOTE, ["ed25519:k1"], at_ts=clock.time_ms()) == {}
    assert fetcher.calls == []


async def test_no_fetcher_means_cache_only(db, clock, our_key):
    ring = make_ring(db, None, clock, our_key)
    assert await ring.verify_keys(REMOTE, ["ed25519:k1"], at_ts=clock.time_ms()) == {}


async def test_single_flight(ring, fetcher, clock):
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    fetcher.gate = trio.Event()
    results = []

    async def ask() -> None:
        results.append(await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms()))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        fetcher.gate.set()
    assert fetcher.calls == [("origin", REMOTE)]
    assert results == [{key.key_id: key.verify_key}] * 5


# --- through notaries --------------------------------------------------------------------------


def notary_answering(notary_key: SigningKey, *bodies):
    def answer(criteria):
        return [sign_json(b, NOTARY, notary_key) for b in bodies]

    return answer


async def test_notary_answer_needs_both_signatures(db, fetcher, clock, our_key):
    notary_key = SigningKey.generate("n1")
    ring = make_ring(
        db,
        fetcher,
        clock,
        our_key,
        notaries=[TrustedKeyServer(NOTARY, {notary_key.key_id: notary_key.verify_key.to_base64()})],
    )
    key = SigningKey.generate("k1")
    body = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    fetcher.notaries[NOTARY] = notary_answering(notary_key, body)
    assert await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms())
    assert fetcher.calls == [("notary", NOTARY)]
    rows = await ServerKeyStore(db).keys_of(REMOTE)
    assert rows[0].fetched_from == NOTARY


@pytest.mark.parametrize("missing", ["notary", "origin"])
async def test_notary_answer_missing_a_signature_falls_back_to_origin(
    db, fetcher, clock, our_key, missing
):
    notary_key = SigningKey.generate("n1")
    ring = make_ring(
        db,
        fetcher,
        clock,
        our_key,
        notaries=[TrustedKeyServer(NOTARY, {notary_key.key_id: notary_key.verify_key.to_base64()})],
    )
    key = SigningKey.generate("k1")
    fake = SigningKey.generate("k1")  # same key ID, another key: a lying notary
    if missing == "notary":
        body = make_key_response(REMOTE, fake, valid_until_ts=clock.time_ms() + DAY)
        fetcher.notaries[NOTARY] = lambda criteria: [body]
    else:
        body = make_key_response(REMOTE, fake, valid_until_ts=clock.time_ms() + DAY)
        body["verify_keys"][fake.key_id]["key"] = key.verify_key.to_base64()  # origin sig breaks
        fetcher.notaries[NOTARY] = notary_answering(notary_key, body)
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    keys = await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms())
    assert keys == {key.key_id: key.verify_key}
    assert fetcher.calls == [("notary", NOTARY), ("origin", REMOTE)]


async def test_notary_keys_fetched_from_the_notary_when_not_configured(db, fetcher, clock, our_key):
    notary_key = SigningKey.generate("n1")
    ring = make_ring(db, fetcher, clock, our_key, notaries=[TrustedKeyServer(NOTARY)])
    key = SigningKey.generate("k1")
    fetcher.notaries[NOTARY] = notary_answering(
        notary_key, make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    )
    fetcher.origins[NOTARY] = make_key_response(
        NOTARY, notary_key, valid_until_ts=clock.time_ms() + DAY
    )
    assert await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms())
    assert fetcher.calls == [("notary", NOTARY), ("origin", NOTARY)]


# --- verifying JSON and events -----------------------------------------------------------------


async def test_verify_json(ring, fetcher, clock):
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    obj = sign_json({"a": 1}, REMOTE, key)
    await ring.verify_json(obj, REMOTE, at_ts=clock.time_ms())
    with pytest.raises(SignatureError):
        await ring.verify_json({**obj, "a": 2}, REMOTE, at_ts=clock.time_ms())
    with pytest.raises(SignatureError):
        await ring.verify_json({"a": 1}, REMOTE, at_ts=clock.time_ms())
    with pytest.raises(SignatureError):
        await ring.verify_json(
            sign_json({"a": 1}, REMOTE, SigningKey.generate("zz")), REMOTE, at_ts=0
        )


def sign_event(room_version, pdu, key):
    """Events are signed in their redacted form."""
    signatures = sign_json(redact(room_version, pdu), REMOTE, key)["signatures"]
    return {**pdu, "signatures": signatures}


async def test_verify_event_needs_sender_server(ring, fetcher, clock):
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    room_version = KNOWN_ROOM_VERSIONS["10"]
    pdu = {
        "type": "m.room.message",
        "room_id": "!r:remote.example",
        "sender": "@a:remote.example",
        "content": {"body": "hi"},
        "origin_server_ts": clock.time_ms(),
        "depth": 3,
        "prev_events": [],
        "auth_events": [],
        "hashes": {"sha256": "x"},
    }
    signed = sign_event(room_version, pdu, key)
    await ring.verify_event(room_version, signed)
    # the content is not covered (redacted form is signed): changing it keeps the signature
    await ring.verify_event(room_version, {**signed, "content": {"body": "changed"}})
    with pytest.raises(SignatureError):
        await ring.verify_event(room_version, {**signed, "depth": 4})
    with pytest.raises(SignatureError):
        await ring.verify_event(room_version, {**signed, "sender": "@a:other.example"})
    with pytest.raises(SignatureError):
        await ring.verify_event(room_version, {**signed, "origin_server_ts": "now"})
    # v5+: a key whose validity ended before the event does not verify it
    with pytest.raises(SignatureError):
        await ring.verify_event(
            room_version,
            sign_json({**pdu, "origin_server_ts": clock.time_ms() + 8 * DAY}, REMOTE, key),
        )


# --- the notary ------------------------------------------------------------------------------


async def test_notary_query_signs_origin_response(ring, fetcher, clock, our_key):
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    [answer] = await ring.query({REMOTE: {key.key_id: None}})
    verify_signed_json(answer, REMOTE, key.verify_key)
    verify_signed_json(answer, OURS, our_key.verify_key)
    # asking for all keys, and about ourselves
    assert len(await ring.query({REMOTE: {}})) == 1
    [own] = await ring.query({OURS: {}})
    assert own["server_name"] == OURS
    assert await ring.query({"bad name!": {}}) == []
    assert fetcher.calls == [("origin", REMOTE)]


async def test_notary_returns_expired_key_when_nothing_newer(ring, fetcher, clock):
    key = SigningKey.generate("key_0")
    expiry = clock.time_ms() - DAY
    body = make_key_response(REMOTE, key, valid_until_ts=expiry)
    fetcher.origins[REMOTE] = body
    [first] = await ring.query({REMOTE: {key.key_id: 0}})
    [second] = await ring.query({REMOTE: {key.key_id: expiry + 1000}})
    fetcher.origins[REMOTE] = RuntimeError("400")
    [third] = await ring.query({REMOTE: {key.key_id: expiry + 1000}})
    assert first["valid_until_ts"] == second["valid_until_ts"] == third["valid_until_ts"] == expiry
    assert fetcher.calls == [("origin", REMOTE)] * 3


async def test_notary_does_not_forget_a_key_on_a_spurious_answer(ring, fetcher, clock):
    k1 = SigningKey.generate("key_1")
    k2 = SigningKey.generate("key_2")
    expiry = clock.time_ms() - DAY
    fetcher.origins[REMOTE] = make_key_response(REMOTE, k1, valid_until_ts=expiry)
    await ring.query({REMOTE: {k1.key_id: None}})
    fetcher.origins[REMOTE] = make_key_response(REMOTE, k2, valid_until_ts=expiry + 1000)
    await ring.query({REMOTE: {k1.key_id: clock.time_ms()}})
    [answer] = await ring.query({REMOTE: {k1.key_id: expiry}})
    assert k1.key_id in answer["verify_keys"]


async def test_store_keeps_the_more_valid_row(db):
    store = ServerKeyStore(db)

    def row(valid_until: int, key: str, expired: int | None = None) -> ServerKeyRow:
        return ServerKeyRow(REMOTE, "ed25519:a", key, valid_until, expired, 5, REMOTE, "{}")

    await store.store_keys([row(100, "AAA")])
    await store.store_keys([row(50, "BBB")])  # older answer: ignored
    assert [r.verify_key for r in await store.keys_of(REMOTE)] == ["AAA"]
    await store.store_keys([row(100, "CCC", expired=90)])  # as valid: replaces
    [r] = await store.keys_of(REMOTE)
    assert (r.verify_key, r.expired_ts) == ("CCC", 90)
    assert await store.keys_of("nobody.example") == []
    await store.store_keys([])


@pytest.mark.parametrize(
    "server, allowed",
    [
        ("good.example", True),
        ("GOOD.example:8448", True),
        ("evil.example", False),
        ("Evil.Example:1234", False),
        ("exact.example:8448", False),
        ("exact.example:8449", True),
        ("other.example", False),
        ("[::1]:8448", True),
    ],
)
def test_server_policy(server: str, allowed: bool) -> None:
    policy = ServerPolicy(
        allowlist=frozenset({"good.example", "exact.example", "evil.example", "[::1]"}),
        denylist=frozenset({"evil.example", "exact.example:8448"}),
    )
    assert policy.allows(server) is allowed
    assert ServerPolicy().allows(server)


async def test_fetch_outlives_a_cancelled_first_requester(ring, fetcher, clock, nursery):
    await nursery.start(ring.run)
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    fetcher.gate = trio.Event()
    results = []
    impatient = trio.CancelScope()

    async def ask() -> None:
        results.append(await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms()))

    async def ask_then_give_up() -> None:
        with impatient:
            await ask()

    async with trio.open_nursery() as requests:
        requests.start_soon(ask_then_give_up)  # the first: it starts the fetch
        await trio.testing.wait_all_tasks_blocked()
        requests.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        impatient.cancel()
        await trio.testing.wait_all_tasks_blocked()
        fetcher.gate.set()
    assert fetcher.calls == [("origin", REMOTE)]
    assert results == [{key.key_id: key.verify_key}]


async def test_a_failing_store_leaves_waiters_without_keys(db, fetcher, clock, our_key, nursery):
    class BrokenStore(ServerKeyStore):
        async def store_keys(self, rows):
            raise RuntimeError("disk full")

    ring = ServerKeys(BrokenStore(db), fetcher, clock, server_name=OURS, signing_key=our_key)
    await nursery.start(ring.run)
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + DAY)
    assert await ring.verify_keys(REMOTE, [key.key_id], at_ts=clock.time_ms()) == {}


async def test_notary_all_keys_with_a_minimum(ring, fetcher, clock):
    key = SigningKey.generate("k1")
    fetcher.origins[REMOTE] = make_key_response(REMOTE, key, valid_until_ts=clock.time_ms() + 1000)
    await ring.query({REMOTE: {}})
    await ring.query({REMOTE: {}}, minimum_valid_until_ts=clock.time_ms() + 500)
    assert fetcher.calls == [("origin", REMOTE)]  # what we have is valid long enough
    [answer] = await ring.query({REMOTE: {}}, minimum_valid_until_ts=clock.time_ms() + 5000)
    assert fetcher.calls == [("origin", REMOTE)] * 2  # not valid long enough: asked again
    assert key.key_id in answer["verify_keys"]
