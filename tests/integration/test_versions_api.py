"""``GET /_matrix/client/versions`` advertises only versions whose endpoints are served: every
Client-Server endpoint the spec marks as added in an advertised version answers with something
else than "unrecognised" (over real sockets, without credentials: 401 and 400 count as served)."""

from __future__ import annotations

import re

from homeserver.api.client.versions import SUPPORTED_VERSIONS
from tests.integration.conftest import RunningServer

#: The Client-Server endpoints with ``x-addedInMatrixVersion`` up to v1.12, from the spec's
#: ENDPOINTS.md (matrix-spec v1.19): (version, method, path).
ADDED: list[tuple[str, str, str]] = [
    ("1.1", "POST", "/_matrix/client/v3/keys/device_signing/upload"),
    ("1.1", "POST", "/_matrix/client/v3/keys/signatures/upload"),
    ("1.1", "GET", "/_matrix/client/v3/room_keys/version"),
    ("1.1", "POST", "/_matrix/client/v3/room_keys/version"),
    ("1.1", "GET", "/_matrix/client/v3/room_keys/version/{version}"),
    ("1.1", "PUT", "/_matrix/client/v3/room_keys/version/{version}"),
    ("1.1", "DELETE", "/_matrix/client/v3/room_keys/version/{version}"),
    ("1.1", "GET", "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}"),
    ("1.1", "PUT", "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}"),
    ("1.1", "DELETE", "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}"),
    ("1.1", "GET", "/_matrix/client/v3/room_keys/keys/{roomId}"),
    ("1.1", "PUT", "/_matrix/client/v3/room_keys/keys/{roomId}"),
    ("1.1", "DELETE", "/_matrix/client/v3/room_keys/keys/{roomId}"),
    ("1.1", "GET", "/_matrix/client/v3/room_keys/keys"),
    ("1.1", "PUT", "/_matrix/client/v3/room_keys/keys"),
    ("1.1", "DELETE", "/_matrix/client/v3/room_keys/keys"),
    ("1.1", "POST", "/_matrix/client/v3/knock/{roomIdOrAlias}"),
    ("1.2", "GET", "/_matrix/client/v1/register/m.login.registration_token/validity"),
    ("1.2", "GET", "/_matrix/client/v1/rooms/{roomId}/hierarchy"),
    ("1.3", "POST", "/_matrix/client/v3/refresh"),
    ("1.4", "GET", "/_matrix/client/v1/rooms/{roomId}/threads"),
    ("1.6", "GET", "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event"),
    ("1.7", "PUT", "/_matrix/media/v3/upload/{serverName}/{mediaId}"),
    ("1.7", "POST", "/_matrix/media/v1/create"),
    ("1.11", "GET", "/_matrix/client/v1/media/download/{serverName}/{mediaId}"),
    ("1.11", "GET", "/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}"),
    ("1.11", "GET", "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"),
    ("1.11", "GET", "/_matrix/client/v1/media/preview_url"),
    ("1.11", "GET", "/_matrix/client/v1/media/config"),
]

#: Added endpoints a server may leave out, and why.
OPTIONAL = {
    # only with the SSO login type, which this server does not offer
    "/_matrix/client/v3/login/sso/redirect",
    "/_matrix/client/v3/login/sso/redirect/{idpId}",
    # only with the m.get_login_token capability, which this server does not announce
    "/_matrix/client/v1/login/get_token",
    # only for registered application services (none can be registered here)
    "/_matrix/client/v1/appservice/{appserviceId}/ping",
    # 404 is its answer when there is no support information
    "/.well-known/matrix/support",
}

_FILL = {"roomId": "!r:test.local", "roomIdOrAlias": "!r:test.local", "serverName": "test.local"}


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.lstrip("v").split("."))


async def test_advertised_versions_are_served(server: RunningServer) -> None:
    async with server.client() as c:
        r = await c.get("/_matrix/client/versions")
        advertised = r.json()["versions"]
        assert advertised == list(SUPPORTED_VERSIONS)
        newest = max(_version(v) for v in advertised)
        missing = []
        for since, method, path in ADDED:
            if _version(since) > newest or path in OPTIONAL:
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: _FILL.get(m.group(1), "x"), path)
            r = await c.request(method, url, json={} if method in ("PUT", "POST") else None)
            unrecognised = r.status_code in (404, 405) and (
                not r.content or r.json().get("errcode") == "M_UNRECOGNIZED"
            )
            if unrecognised:
                missing.append((since, method, path))
        assert missing == []
