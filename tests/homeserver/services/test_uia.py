"""UiaService on every backend, with a fake clock."""

from __future__ import annotations

import json

import pytest

from homeserver.clock import FakeClock
from homeserver.errors import MatrixError
from homeserver.services.passwords import PasswordHasher
from homeserver.services.requester import Requester
from homeserver.services.uia import (
    DUMMY,
    MSISDN,
    PASSWORD,
    REGISTRATION_TOKEN,
    UiaRequired,
    UiaService,
    request_key,
)
from homeserver.storage import Stores
from homeserver.storage.threepids import ThreepidSessionRow

KEY = request_key("POST", "/_matrix/client/v3/register", {"username": "a"})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024)


@pytest.fixture
def uia(stores: Stores, clock: FakeClock, hasher: PasswordHasher) -> UiaService:
    return UiaService(
        stores.uia,
        stores.users,
        stores.registration_tokens,
        stores.threepids,
        hasher,
        clock,
        server_name="x",
        session_lifetime_ms=60_000,
    )


async def start(uia: UiaService, flows, key: str = KEY, requester=None) -> UiaRequired:
    with pytest.raises(UiaRequired) as info:
        await uia.check(requester=requester, body={}, request_key=key, flows=flows)
    return info.value


async def test_no_auth_gives_401_with_flows_and_session(uia):
    err = await start(uia, [[DUMMY]])
    body = err.to_json()
    assert err.status == 401
    assert body["flows"] == [{"stages": [DUMMY]}]
    assert body["params"] == {} and body["completed"] == [] and body["session"]
    assert "errcode" not in body


async def test_one_shot_dummy_without_session(uia):
    result = await uia.check(
        requester=None, body={"auth": {"type": DUMMY}}, request_key=KEY, flows=[[DUMMY]]
    )
    assert result.completed == (DUMMY,)


async def test_dummy_only_where_offered(uia, stores, hasher):
    await stores.users.create_user("@u:x", password_hash=await hasher.hash("pw"), created_ts=1)
    me = Requester("@u:x", "D")
    err = await start(uia, [[PASSWORD]], requester=me)
    with pytest.raises(UiaRequired) as info:
        await uia.check(
            requester=me,
            body={"auth": {"type": DUMMY, "session": err.session}},
            request_key=KEY,
            flows=[[PASSWORD]],
        )
    assert info.value.to_json()["errcode"] == "M_FORBIDDEN"


async def test_stages_in_order_and_completed_is_remembered(uia, stores, clock):
    await stores.registration_tokens.create(
        "tok", uses_allowed=1, expiry_time=None, created_ts=clock.time_ms()
    )
    flows = [[REGISTRATION_TOKEN, DUMMY]]
    err = await start(uia, flows)
    # dummy first is out of order
    with pytest.raises(UiaRequired) as info:
        await uia.check(
            requester=None,
            body={"auth": {"type": DUMMY, "session": err.session}},
            request_key=KEY,
            flows=flows,
        )
    assert info.value.to_json()["errcode"] == "M_FORBIDDEN"
    # wrong token: M_UNAUTHORIZED, then the right one: still 401 with completed
    for token, errcode in (("nope", "M_UNAUTHORIZED"), ("tok", None)):
        with pytest.raises(UiaRequired) as info:
            await uia.check(
                requester=None,
                body={"auth": {"type": REGISTRATION_TOKEN, "token": token, "session": err.session}},
                request_key=KEY,
                flows=flows,
            )
        assert info.value.to_json().get("errcode") == errcode
    assert info.value.to_json()["completed"] == [REGISTRATION_TOKEN]
    result = await uia.check(
        requester=None,
        body={"auth": {"type": DUMMY, "session": err.session}},
        request_key=KEY,
        flows=flows,
    )
    assert result.registration_token == "tok"
    assert (await stores.registration_tokens.get("tok")).pending == 1
    # retrying a completed session gives the result again (spec)
    again = await uia.check(
        requester=None, body={"auth": {"session": err.session}}, request_key=KEY, flows=flows
    )
    assert again.registration_token == "tok"


async def test_session_bound_to_request_and_user(uia):
    err = await start(uia, [[DUMMY]])
    other = request_key("POST", "/_matrix/client/v3/register", {"username": "b"})
    with pytest.raises(MatrixError) as info:
        await uia.check(
            requester=None,
            body={"auth": {"type": DUMMY, "session": err.session}},
            request_key=other,
            flows=[[DUMMY]],
        )
    assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")
    with pytest.raises(MatrixError) as info:
        await uia.check(
            requester=Requester("@someone:x", "D"),
            body={"auth": {"type": DUMMY, "session": err.session}},
            request_key=KEY,
            flows=[[DUMMY]],
        )
    assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")


async def test_sessions_expire(uia, stores, clock):
    await stores.registration_tokens.create("tok", uses_allowed=1, expiry_time=None, created_ts=1)
    flows = [[REGISTRATION_TOKEN, DUMMY]]
    err = await start(uia, flows)
    with pytest.raises(UiaRequired):
        await uia.check(
            requester=None,
            body={"auth": {"type": REGISTRATION_TOKEN, "token": "tok", "session": err.session}},
            request_key=KEY,
            flows=flows,
        )
    assert (await stores.registration_tokens.get("tok")).pending == 1
    clock.advance(61)
    with pytest.raises(MatrixError) as info:
        await uia.check(
            requester=None,
            body={"auth": {"type": DUMMY, "session": err.session}},
            request_key=KEY,
            flows=flows,
        )
    assert (info.value.status, info.value.errcode) == (400, "M_UNKNOWN")
    assert await uia.expire_sessions() == 1
    # the reserved use was given back
    assert (await stores.registration_tokens.get("tok")).pending == 0
    assert await stores.uia.get_session(err.session) is None


async def test_password_stage(uia, stores, hasher):
    await stores.users.create_user(
        "@u:x", password_hash=await hasher.hash("right"), created_ts=1, phone="+4915123456789"
    )
    me = Requester("@u:x", "D")
    err = await start(uia, [[PASSWORD]], requester=me)

    async def attempt(auth):
        return await uia.check(
            requester=me,
            body={"auth": {"type": PASSWORD, "session": err.session, **auth}},
            request_key=KEY,
            flows=[[PASSWORD]],
        )

    with pytest.raises(UiaRequired) as info:
        await attempt({"identifier": {"type": "m.id.user", "user": "u"}, "password": "wrong"})
    assert info.value.to_json()["errcode"] == "M_FORBIDDEN"
    with pytest.raises(MatrixError) as info:
        await attempt({"identifier": {"type": "m.id.user", "user": "u"}, "password": 5})
    assert info.value.errcode == "M_BAD_JSON"
    result = await attempt(
        {
            "identifier": {"type": "m.id.phone", "country": "DE", "phone": "0151 23456789"},
            "password": "right",
        }
    )
    assert result.user_id == "@u:x"


async def test_msisdn_stage(uia, stores, clock):
    row = ThreepidSessionRow(
        sid="sid1",
        medium="msisdn",
        address="+4915123456789",
        client_secret="sec",
        send_attempt=1,
        code_hash=None,
        code_expires_ts=0,
        last_sent_ts=0,
        failed_attempts=0,
        validated_ts=None,
        created_ts=clock.time_ms(),
    )
    await stores.threepids.create(row)
    err = await start(uia, [[MSISDN]])
    body = {
        "auth": {
            "type": MSISDN,
            "session": err.session,
            "threepid_creds": {"sid": "sid1", "client_secret": "sec"},
        }
    }
    with pytest.raises(UiaRequired) as info:
        await uia.check(requester=None, body=body, request_key=KEY, flows=[[MSISDN]])
    assert info.value.to_json()["errcode"] == "M_UNAUTHORIZED"
    await stores.threepids.mark_validated("sid1", now=clock.time_ms())
    bad = json.loads(json.dumps(body))
    bad["auth"]["threepid_creds"]["client_secret"] = "other"
    with pytest.raises(UiaRequired):
        await uia.check(requester=None, body=bad, request_key=KEY, flows=[[MSISDN]])
    result = await uia.check(requester=None, body=body, request_key=KEY, flows=[[MSISDN]])
    assert result.phone == "+4915123456789"


@pytest.mark.parametrize(
    "auth",
    ["dummy", {"type": 5}, {"session": 5}, {"type": MSISDN, "threepid_creds": "x"}],
)
async def test_malformed_auth(uia, auth):
    with pytest.raises(MatrixError) as info:
        await uia.check(requester=None, body={"auth": auth}, request_key=KEY, flows=[[MSISDN]])
    assert (info.value.status, info.value.errcode) == (400, "M_BAD_JSON")


async def test_session_remembers_parameters(uia, stores):
    first = await uia.open_session(
        requester=None, body={}, request_key=KEY, params={"username": "a", "device_id": "D1"}
    )
    assert first.params == {"username": "a", "device_id": "D1"} and first.outcome == {}
    body = {"auth": {"session": first.session_id}}
    # omitted parameters come from the session; given ones replace them and are remembered
    later = await uia.open_session(
        requester=None, body=body, request_key=KEY, params={"device_id": "D2"}
    )
    assert later.params == {"username": "a", "device_id": "D2"}
    again = await uia.open_session(requester=None, body=body, request_key=KEY)
    assert again.params == {"username": "a", "device_id": "D2"}
    # the data row is no completed stage
    assert again.completed == {}
    err = await start(uia, [[DUMMY]])
    row = await stores.uia.get_session(err.session)
    assert row.stages == () and row.data is None


async def test_settled_session_replays_its_outcome_and_keeps_token_use(uia, stores, clock):
    await stores.registration_tokens.create("tok", uses_allowed=1, expiry_time=None, created_ts=1)
    flows = [[REGISTRATION_TOKEN, DUMMY]]
    session = await uia.open_session(
        requester=None, body={}, request_key=KEY, params={"username": "a"}
    )
    auth = {"session": session.session_id}
    with pytest.raises(UiaRequired):
        await uia.check(
            requester=None,
            body={"auth": {**auth, "type": REGISTRATION_TOKEN, "token": "tok"}},
            request_key=KEY,
            flows=flows,
        )
    result = await uia.check(
        requester=None, body={"auth": {**auth, "type": DUMMY}}, request_key=KEY, flows=flows
    )
    assert result.registration_token == "tok"
    await stores.registration_tokens.consume("tok")
    await uia.settle(session, {"user_id": "@a:x"})
    replay = await uia.open_session(requester=None, body={"auth": auth}, request_key=KEY)
    assert replay.outcome == {"user_id": "@a:x"} and replay.params == {"username": "a"}
    assert replay.completed == {}
    # a replay's parameters do not change a settled session
    replay = await uia.open_session(
        requester=None, body={"auth": auth}, request_key=KEY, params={"username": "b"}
    )
    assert replay.params == {"username": "b"}
    again = await uia.open_session(requester=None, body={"auth": auth}, request_key=KEY)
    assert again.params == {"username": "a"}
    # expiry gives back nothing: the use was spent
    clock.advance(61)
    assert await uia.expire_sessions() == 0  # no reserved use to give back
    assert await stores.uia.get_session(session.session_id) is None
    row = await stores.registration_tokens.get("tok")
    assert (row.pending, row.completed) == (0, 1)


async def test_another_users_password_is_403(uia, stores, hasher):
    await stores.users.create_user("@u:x", password_hash=await hasher.hash("mine"), created_ts=1)
    await stores.users.create_user("@m:x", password_hash=await hasher.hash("theirs"), created_ts=1)
    me = Requester("@u:x", "D")
    err = await start(uia, [[PASSWORD]], requester=me)
    with pytest.raises(MatrixError) as info:
        await uia.check(
            requester=me,
            body={
                "auth": {
                    "type": PASSWORD,
                    "session": err.session,
                    "identifier": {"type": "m.id.user", "user": "m"},
                    "password": "theirs",
                }
            },
            request_key=KEY,
            flows=[[PASSWORD]],
        )
    assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")
    assert not isinstance(info.value, UiaRequired)
    # the stage was not recorded
    assert (await stores.uia.get_session(err.session)).stages == ()
