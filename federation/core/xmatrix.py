"""Request authentication between servers: the ``X-Matrix`` Authorization scheme.

Spec: server-server-api.md › Authentication › Request Authentication
(https://spec.matrix.org/v1.19/server-server-api/#request-authentication):

    Every HTTP request made by a homeserver is authenticated using public key digital
    signatures. The request method, target and body are signed by wrapping them in a JSON
    object and signing it using the JSON signing algorithm. The resulting signatures are added
    as an ``Authorization`` header with an auth scheme of ``X-Matrix``.

Pure: the signing key and the verify key are parameters; fetching the origin's keys is the
caller's business. The header grammar is RFC 9110 § 11.4 auth-params with the spec's
compatibility rules: names case-insensitive, values quoted or bare tokens, backslash escapes
inside quotes, bare values may contain colons (older servers send ``key=ed25519:abc``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.core.canonicaljson import encode_canonical_json
from federation.core.errors import SignatureError
from federation.core.signing import (
    SigningKey,
    VerifyKey,
    decode_base64,
    encode_base64,
)

__all__ = [
    "XMatrixAuth",
    "XMatrixParseError",
    "format_authorization",
    "parse_authorization",
    "request_json",
    "sign_request",
    "verify_request",
    "verify_request_with_keys",
]

_SCHEME = "x-matrix"
#: RFC 9110 tchar, plus ':' for the spec's compatibility rule on bare values.
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:"
)


class XMatrixParseError(ValueError):
    """Raised when an ``Authorization`` header is not a well-formed ``X-Matrix`` header."""


@dataclass(frozen=True, slots=True)
class XMatrixAuth:
    """The parameters of one ``X-Matrix`` header.

    ``destination`` is ``None`` when the sender left it out (servers before v1.3 did; the spec
    says recipients should accept that).
    """

    origin: str
    key_id: str
    signature: str
    destination: str | None = None


def request_json(
    method: str,
    uri: str,
    origin: str,
    destination: str,
    content: Any = None,
) -> dict[str, Any]:
    """The JSON object that is signed for a request (step 1 of the spec's algorithm).

    Args:
        method: The HTTP method, upper case.
        uri: The request target: path from ``/_matrix/...`` with ``?query`` if any, as sent.
        origin: The sending server's name.
        destination: The receiving server's name (before any delegation).
        content: The parsed JSON body, or ``None`` when the request has no body.
    """
    obj: dict[str, Any] = {
        "method": method.upper(),
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(
    key: SigningKey,
    method: str,
    uri: str,
    origin: str,
    destination: str,
    content: Any = None,
) -> str:
    """The ``Authorization`` header value for one outgoing request."""
    # not strict: a body may carry events of room versions 1-5 (floats, large integers), which
    # other servers sign as Python's canonicaljson writes them
    signed = encode_canonical_json(
        request_json(method, uri, origin, destination, content), strict=False
    )
    signature = encode_base64(key.sign(signed))
    return format_authorization(
        XMatrixAuth(origin=origin, destination=destination, key_id=key.key_id, signature=signature)
    )


def format_authorization(auth: XMatrixAuth) -> str:
    """Render a header the way the spec asks senders to: lower-case names, quoted values."""
    parts = [f'origin="{_quote(auth.origin)}"']
    if auth.destination is not None:
        parts.append(f'destination="{_quote(auth.destination)}"')
    parts.append(f'key="{_quote(auth.key_id)}"')
    parts.append(f'sig="{_quote(auth.signature)}"')
    return "X-Matrix " + ",".join(parts)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def parse_authorization(header: str) -> XMatrixAuth:
    """Parse an ``Authorization`` header value.

    Raises:
        XMatrixParseError: Not the ``X-Matrix`` scheme, malformed parameters, or one of
            ``origin``, ``key`` and ``sig`` missing or empty.
    """
    scheme, sep, rest = header.strip().partition(" ")
    if not sep or scheme.lower() != _SCHEME:
        raise XMatrixParseError("not an X-Matrix Authorization header")
    params = _parse_params(rest)
    origin = params.get("origin")
    key_id = params.get("key")
    signature = params.get("sig")
    if not origin or not key_id or not signature:
        raise XMatrixParseError("X-Matrix header needs origin, key and sig")
    return XMatrixAuth(
        origin=origin, key_id=key_id, signature=signature, destination=params.get("destination")
    )


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in "= \t,":
            i += 1
        name = text[start:i].lower()
        if not name or i >= n or text[i] != "=":
            raise XMatrixParseError("malformed X-Matrix parameter")
        i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise XMatrixParseError("unterminated quoted value")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise XMatrixParseError("unterminated quoted value")
                    chars.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] in _TOKEN_CHARS:
                i += 1
            value = text[start:i]
            if not value:
                raise XMatrixParseError("empty X-Matrix parameter value")
        # The first occurrence wins: a repeated parameter cannot override a signed one.
        params.setdefault(name, value)
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        if text[i] != ",":
            raise XMatrixParseError("expected ',' between X-Matrix parameters")
        i += 1
    return params


def verify_request(
    auth: XMatrixAuth,
    verify_key: VerifyKey,
    method: str,
    uri: str,
    destination: str,
    content: Any = None,
) -> None:
    """Check the signature of an incoming request against the origin's key ``auth.key_id``.

    ``destination`` is our own server name: the signed JSON always names it, so a request
    signed for another server fails here even when its header leaves ``destination`` out.
    (The caller refuses a header whose ``destination`` is not ours before fetching any key.)

    Raises:
        SignatureError: The signature does not verify, or is not valid base64.
    """
    signed = encode_canonical_json(
        request_json(method, uri, auth.origin, destination, content), strict=False
    )
    try:
        signature = decode_base64(auth.signature)
    except ValueError as exc:
        raise SignatureError("X-Matrix signature is not valid base64") from exc
    verify_key.verify(signed, signature)


def verify_request_with_keys(
    auth: XMatrixAuth,
    keys: Mapping[str, VerifyKey],
    method: str,
    uri: str,
    destination: str,
    content: Any = None,
) -> None:
    """:func:`verify_request` with the origin's keys by key ID.

    Raises:
        SignatureError: The key is not among ``keys``, or the signature does not verify.
    """
    key = keys.get(auth.key_id)
    if key is None:
        raise SignatureError(f"unknown key {auth.key_id} for {auth.origin}")
    verify_request(auth, key, method, uri, destination, content)
