"""Which push gateway URLs pushers may use, and how a rule's actions become a push's tweaks
and priority (pure functions of the pushers service and the push sender)."""

from __future__ import annotations

import pytest

from homeserver.errors import InvalidParam
from homeserver.services.push_sender import _tweaks
from homeserver.services.pushers import check_gateway_url, is_public_address

NOTIFY = "/_matrix/push/v1/notify"


@pytest.mark.parametrize(
    "url",
    [
        "https://push.example.org" + NOTIFY,
        "https://push.example.org:8443" + NOTIFY,
        "http://push.example.org" + NOTIFY,
        "https://8.8.8.8" + NOTIFY,
        "https://[2001:4860:4860::8888]" + NOTIFY,
    ],
)
def test_public_urls_are_accepted(url: str) -> None:
    assert check_gateway_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://push.example.org/_matrix/push/v1/notify/",
        "https://push.example.org/other",
        "https://push.example.org",
        "push.example.org" + NOTIFY,
        NOTIFY,
        "ftp://push.example.org" + NOTIFY,
        "https://user:pw@push.example.org" + NOTIFY,
        "https://push.example.org" + NOTIFY + "#frag",
        "https://push.example.org:0" + NOTIFY,
        "https://push.example.org:99999" + NOTIFY,
        "https://[::1" + NOTIFY,
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    for allow in (False, True):
        with pytest.raises(InvalidParam):
            check_gateway_url(url, allow_private=allow)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "[::1]",
        "[fe80::1]",
        "[fc00::1]",
        "[::ffff:127.0.0.1]",
        "localhost",
        "LOCALHOST.",
        "push.localhost",
    ],
)
def test_private_destinations_need_the_option(host: str) -> None:
    url = f"https://{host}{NOTIFY}"
    with pytest.raises(InvalidParam):
        check_gateway_url(url, allow_private=False)
    assert check_gateway_url(url, allow_private=True) == url


def test_public_address() -> None:
    assert is_public_address("8.8.8.8")
    assert is_public_address("2001:4860:4860::8888")
    assert not is_public_address("::ffff:10.0.0.1")
    assert not is_public_address("224.0.0.1")
    assert not is_public_address("not an address")


def test_tweaks_of_actions() -> None:
    assert _tweaks(["notify", {"set_tweak": "sound", "value": "default"}]) == {"sound": "default"}
    assert _tweaks(["notify", {"set_tweak": "highlight"}]) == {"highlight": True}
    assert _tweaks([{"set_tweak": "highlight", "value": False}]) == {"highlight": False}
    assert _tweaks(["notify", "dont_notify", {"set_tweak": 3}, 7]) == {}
