"""X-Matrix request signing: the header grammar and the signature over method, URI and body."""

from __future__ import annotations

import pytest

from federation.core.errors import SignatureError
from federation.core.signing import SigningKey
from federation.core.xmatrix import (
    XMatrixAuth,
    XMatrixParseError,
    parse_authorization,
    sign_request,
    verify_request,
    verify_request_with_keys,
)

KEY = SigningKey(b"\x01" * 32, "a_1")
VERIFY = KEY.verify_key


def test_signed_header_round_trips_and_verifies() -> None:
    header = sign_request(
        KEY, "put", "/_matrix/federation/v1/send/1?x=1", "a.org", "b.org", {"pdus": []}
    )
    assert header.startswith('X-Matrix origin="a.org",destination="b.org",key="ed25519:a_1",sig="')
    auth = parse_authorization(header)
    assert (auth.origin, auth.destination, auth.key_id) == ("a.org", "b.org", "ed25519:a_1")
    verify_request(auth, VERIFY, "PUT", "/_matrix/federation/v1/send/1?x=1", "b.org", {"pdus": []})
    verify_request_with_keys(
        auth,
        {"ed25519:a_1": VERIFY},
        "PUT",
        "/_matrix/federation/v1/send/1?x=1",
        "b.org",
        {"pdus": []},
    )


@pytest.mark.parametrize(
    ("method", "uri", "destination", "content"),
    [
        ("GET", "/_matrix/federation/v1/send/1?x=1", "b.org", {"pdus": []}),  # method
        ("PUT", "/_matrix/federation/v1/send/2?x=1", "b.org", {"pdus": []}),  # uri
        ("PUT", "/_matrix/federation/v1/send/1", "b.org", {"pdus": []}),  # query dropped
        ("PUT", "/_matrix/federation/v1/send/1?x=1", "c.org", {"pdus": []}),  # destination
        ("PUT", "/_matrix/federation/v1/send/1?x=1", "b.org", {"pdus": [1]}),  # body
        ("PUT", "/_matrix/federation/v1/send/1?x=1", "b.org", None),  # body dropped
    ],
)
def test_any_change_breaks_the_signature(method, uri, destination, content) -> None:
    header = sign_request(
        KEY, "PUT", "/_matrix/federation/v1/send/1?x=1", "a.org", "b.org", {"pdus": []}
    )
    with pytest.raises(SignatureError):
        verify_request(parse_authorization(header), VERIFY, method, uri, destination, content)


def test_unknown_key_and_bad_base64() -> None:
    auth = XMatrixAuth(origin="a.org", key_id="ed25519:zz", signature="!!!", destination="b.org")
    with pytest.raises(SignatureError):
        verify_request_with_keys(auth, {"ed25519:a_1": VERIFY}, "GET", "/x", "b.org")
    with pytest.raises(SignatureError):
        verify_request(auth, VERIFY, "GET", "/x", "b.org")


def test_lenient_grammar() -> None:
    auth = parse_authorization(
        'x-matrix  Origin=a.org:8448 , KEY="ed25519:a_1",\tsig="ab\\"c", destination=b.org, extra="1"'
    )
    assert auth == XMatrixAuth(
        origin="a.org:8448", key_id="ed25519:a_1", signature='ab"c', destination="b.org"
    )
    # No destination (servers before v1.3), and repeated names keep the first value.
    auth = parse_authorization('X-Matrix origin=a.org,key="ed25519:1",sig=x,origin=evil.org')
    assert auth.origin == "a.org" and auth.destination is None


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer abc",
        "X-Matrix",
        'X-Matrix origin="a.org",key="ed25519:1"',  # no sig
        'X-Matrix origin="a.org",key="ed25519:1",sig=""',
        'X-Matrix origin="a.org" key="ed25519:1",sig="x"',  # missing comma
        'X-Matrix origin="a.org,key="ed25519:1",sig="x',  # unterminated
        "X-Matrix origin=,key=k,sig=s",
        "X-Matrix =a,key=k,sig=s",
    ],
)
def test_malformed_headers(header: str) -> None:
    with pytest.raises(XMatrixParseError):
        parse_authorization(header)
