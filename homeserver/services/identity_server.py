"""The homeserver's client of identity servers (outbound HTTP, httpx on Trio).

Spec: identity-service-api.md: "Association lookup" (``GET /_matrix/identity/v2/hash_details``
then ``POST /_matrix/identity/v2/lookup``), "Invitation storage"
(``POST /_matrix/identity/v2/store-invite``), "Establishing associations"
(``POST /_matrix/identity/v2/3pid/bind``, ``POST /_matrix/identity/v2/3pid/unbind``).

An identity server is named by the client as ``host[:port]`` (``id_server``) and reached at
``https://host[:port]``. Every request has a timeout. Failures are Matrix errors for the client,
never a 500:

* an ``id_server`` that is not a server name: ``400 M_INVALID_PARAM``;
* one resolving to a loopback, private or link-local address while
  ``identity.allow_private_destinations`` is off: ``400 M_SERVER_NOT_TRUSTED``;
* unreachable, timed out, or answering with something that is not JSON: ``502 M_UNKNOWN``;
* an error answer from the identity server: its ``errcode``/``error`` with status 400 (403
  for ``M_FORBIDDEN``/``M_TERMS_NOT_SIGNED``/``M_UNAUTHORIZED`` stays 403).

No state is kept here: one shared :class:`httpx.AsyncClient` (connection pool only).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from federation.core.signing import SigningKey
from federation.core.xmatrix import sign_request
from homeserver.errors import Codes, InvalidParam, MatrixError
from homeserver.services.pushers import is_public_address

__all__ = ["IdentityServerClient", "check_id_server"]

_SERVER_NAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


def check_id_server(id_server: object) -> str:
    """``id_server`` as given by a client: a server name, ``host[:port]``.

    Raises:
        InvalidParam: anything else (a URL, a path, an empty string, a non-string).
    """
    if not isinstance(id_server, str) or not _SERVER_NAME.match(id_server):
        raise InvalidParam("'id_server' must be a server name (host[:port])")
    return id_server


def _unreachable(id_server: str, why: str) -> MatrixError:
    return MatrixError(502, Codes.UNKNOWN, f"Identity server {id_server} is unreachable: {why}")


async def _resolve(host: str) -> list[str]:
    infos = await trio.socket.getaddrinfo(host, None, type=trio.socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class IdentityServerClient:
    """Requests to identity servers.

    Args:
        http: the shared HTTP client (its TLS settings are ``identity.verify_tls``).
        timeout_s: one request's whole timeout (``identity.request_timeout_s``).
        allow_private: reach loopback/private addresses (``identity.allow_private_destinations``).
        resolve: host name → addresses (default: the system resolver through Trio).
        signing_key: our server key: ``3pid/unbind`` is signed with it (X-Matrix, origin
            ``server_name``), as the spec asks of a homeserver unbinding for its user.
        server_name: ours.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout_s: float,
        allow_private: bool,
        resolve: Callable[[str], Awaitable[list[str]]] | None = None,
        signing_key: SigningKey | None = None,
        server_name: str | None = None,
    ) -> None:
        self._signing_key = signing_key
        self._server_name = server_name
        self._http = http
        self._timeout = timeout_s
        self._allow_private = allow_private
        self._resolve = resolve or _resolve

    async def _check_destination(self, id_server: str) -> None:
        if self._allow_private:
            return
        host = id_server.rsplit(":", 1)[0] if not id_server.endswith("]") else id_server
        host = host.strip("[]")
        try:
            addresses = await self._resolve(host)
        except OSError as e:
            raise _unreachable(id_server, f"cannot resolve {host}: {e}") from None
        if not addresses or not all(is_public_address(a) for a in addresses):
            raise MatrixError(
                400,
                Codes.SERVER_NOT_TRUSTED,
                f"Identity server {id_server} is on a non-public address",
            )

    async def _request(
        self,
        method: str,
        id_server: str,
        path: str,
        *,
        access_token: str | None = None,
        body: Mapping[str, Any] | None = None,
        accept_404: bool = False,
        sign: bool = False,
    ) -> dict[str, Any] | None:
        """One request; the answer's JSON object (None for a 404 when ``accept_404``)."""
        check_id_server(id_server)
        await self._check_destination(id_server)
        headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        if sign and self._signing_key is not None and self._server_name is not None:
            headers["Authorization"] = sign_request(
                self._signing_key, method, path, self._server_name, id_server, body
            )
        url = f"https://{id_server}{path}"
        try:
            with trio.fail_after(self._timeout):
                response = await self._http.request(
                    method,
                    url,
                    json=dict(body) if body is not None else None,
                    headers=headers,
                    timeout=self._timeout,
                )
        except trio.TooSlowError:
            raise _unreachable(id_server, "timed out") from None
        except httpx.HTTPError as e:
            raise _unreachable(id_server, type(e).__name__) from None
        if accept_404 and response.status_code == 404:
            return None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not 200 <= response.status_code < 300:
            errcode = answer.get("errcode") if isinstance(answer, dict) else None
            error = answer.get("error") if isinstance(answer, dict) else None
            status = (
                403 if errcode in ("M_FORBIDDEN", "M_UNAUTHORIZED", "M_TERMS_NOT_SIGNED") else 400
            )
            raise MatrixError(
                status,
                errcode if isinstance(errcode, str) and errcode.startswith("M_") else Codes.UNKNOWN,
                f"Identity server {id_server}: "
                + (error if isinstance(error, str) else f"HTTP {response.status_code}"),
            )
        if not isinstance(answer, dict):
            raise _unreachable(id_server, "the answer is not a JSON object")
        return answer

    async def lookup(
        self, id_server: str, access_token: str, medium: str, address: str
    ) -> str | None:
        """The Matrix user ID bound to ``medium``/``address`` at ``id_server`` (None: unbound).

        Spec: identity-service-api.md › Association lookup: the ``sha256`` algorithm when the
        server offers it ("address medium pepper", SHA-256, unpadded URL-safe base64), else
        ``none`` ("address medium").
        """
        details = await self._request(
            "GET", id_server, "/_matrix/identity/v2/hash_details", access_token=access_token
        )
        assert details is not None
        algorithms = details.get("algorithms")
        pepper = details.get("lookup_pepper")
        if not isinstance(algorithms, list) or not isinstance(pepper, str):
            raise _unreachable(id_server, "hash_details answered without algorithms or pepper")
        if "sha256" in algorithms:
            digest = hashlib.sha256(f"{address} {medium} {pepper}".encode()).digest()
            key = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            algorithm = "sha256"
        elif "none" in algorithms:
            key = f"{address} {medium}"
            algorithm = "none"
        else:
            raise MatrixError(
                400,
                Codes.UNKNOWN,
                f"Identity server {id_server} offers no lookup algorithm we know",
            )
        answer = await self._request(
            "POST",
            id_server,
            "/_matrix/identity/v2/lookup",
            access_token=access_token,
            body={"addresses": [key], "algorithm": algorithm, "pepper": pepper},
        )
        assert answer is not None
        mappings = answer.get("mappings")
        mxid = mappings.get(key) if isinstance(mappings, dict) else None
        return mxid if isinstance(mxid, str) else None

    async def store_invite(
        self, id_server: str, access_token: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``POST /_matrix/identity/v2/store-invite``: ``token``, ``display_name``,
        ``public_keys`` (checked to be there)."""
        answer = await self._request(
            "POST",
            id_server,
            "/_matrix/identity/v2/store-invite",
            access_token=access_token,
            body=fields,
        )
        assert answer is not None
        keys = answer.get("public_keys")
        if (
            not isinstance(answer.get("token"), str)
            or not isinstance(keys, list)
            or not keys
            or not all(isinstance(k, dict) and isinstance(k.get("public_key"), str) for k in keys)
        ):
            raise _unreachable(id_server, "store-invite answered without token or public_keys")
        return answer

    async def bind(
        self, id_server: str, access_token: str, sid: str, client_secret: str, mxid: str
    ) -> dict[str, Any]:
        """``POST /_matrix/identity/v2/3pid/bind``: the signed association."""
        answer = await self._request(
            "POST",
            id_server,
            "/_matrix/identity/v2/3pid/bind",
            access_token=access_token,
            body={"sid": sid, "client_secret": client_secret, "mxid": mxid},
        )
        assert answer is not None
        return answer

    async def key_is_valid(self, key_validity_url: str, public_key: str) -> bool:
        """Whether ``GET key_validity_url?public_key=...`` answers ``valid: true`` (spec:
        identity-service-api.md › Key management). An ``https://`` URL only; any failure
        (unreachable, error, not JSON) is False: an unverifiable key is not trusted."""
        parts = urlsplit(key_validity_url)
        if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
            return False
        try:
            check_id_server(parts.netloc)
            await self._check_destination(parts.netloc)
            with trio.fail_after(self._timeout):
                response = await self._http.get(
                    key_validity_url, params={"public_key": public_key}, timeout=self._timeout
                )
            answer = response.json()
        except (MatrixError, trio.TooSlowError, httpx.HTTPError, ValueError):
            return False
        return (
            response.status_code == 200 and isinstance(answer, dict) and answer.get("valid") is True
        )

    async def unbind(self, id_server: str, mxid: str, medium: str, address: str) -> bool:
        """``POST /_matrix/identity/v2/3pid/unbind``; False when the identity server knows no
        such association (404)."""
        answer = await self._request(
            "POST",
            id_server,
            "/_matrix/identity/v2/3pid/unbind",
            body={"mxid": mxid, "threepid": {"medium": medium, "address": address}},
            accept_404=True,
            sign=True,
        )
        return answer is not None
