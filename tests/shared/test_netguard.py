"""Callback hosts are refused in every spelling, at request time and for what DNS answers."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from shared import netguard
from shared.models import DigestRequest

# A Teredo address whose client (stored XOR-ed with all ones) is 127.0.0.1.
TEREDO_LOOPBACK = "2001:0:4136:e378:8000:63bf:80ff:fffe"


def validate(url: str, *, allow_private: bool = False) -> None:
    body = {"user_info": {"name": "Ada"}, "callback_url": url}
    DigestRequest.model_validate(body, context={"allow_private": allow_private})


def refusal(url: str, *, allow_private: bool = False) -> str:
    """The message the callback URL alone was refused with."""
    with pytest.raises(ValidationError) as caught:
        validate(url, allow_private=allow_private)
    [error] = caught.value.errors()
    assert error["loc"] == ("callback_url",)
    return str(error["msg"])


@pytest.mark.parametrize(
    "url",
    [
        "http://a..example.com/hook",
        "http://.example.com/hook",
        "http://" + "x" * 64 + ".example.com/hook",
        "http://" + ".".join(["abcdefghi"] * 26) + "/hook",
        "http://example.com../hook",
        "http://bad label.example.com/hook",
        "http://%31%32%37.0.0.1/hook",
    ],
)
def test_hosts_dns_cannot_carry_are_refused_at_request_time(url: str) -> None:
    assert "host" in refusal(url, allow_private=True)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://Example.COM./hook", "example.com"),
        ("http://bücher.example/hook", "xn--bcher-kva.example"),
        ("http://例え。テスト/hook", "xn--r8jz45g.xn--zckzah"),
        ("http://my_service.example.com/hook", "my_service.example.com"),
        ("http://" + "x" * 63 + ".example.com/", "x" * 63 + ".example.com"),
    ],
)
def test_names_are_normalised_to_what_is_looked_up(url: str, host: str) -> None:
    assert netguard.check_url(url, allow_private=False) == host


@pytest.mark.parametrize(
    "url",
    [
        "http://１２７.0.0.1/hook",
        "http://１２７．０．０．１/hook",
        "http://127.0.0.1./hook",
        "http://foo.localhost./hook",
        "http://LOCALHOST./hook",
        "http://[2002:7f00:1::]/hook",
        f"http://[{TEREDO_LOOPBACK}]/hook",
        "http://[fec0::1]/hook",
        "http://[64:ff9b::a00:1]/hook",
        "http://[::7f00:1]/hook",
    ],
)
def test_other_spellings_of_refused_hosts_are_refused(url: str) -> None:
    assert "refused" in refusal(url) or "loopback" in refusal(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[2002:a9fe:a9fe::]/",
        "http://[2002:6464:64c8::]/",
        "http://[::ffff:100.100.100.200]/",
    ],
)
def test_metadata_addresses_are_refused_even_when_private_networks_are_allowed(url: str) -> None:
    assert "never a callback target" in refusal(url, allow_private=True)


@pytest.mark.parametrize(
    "url", ["http://[2002:7f00:1::]/", f"http://[{TEREDO_LOOPBACK}]/", "http://[fec0::1]/"]
)
def test_private_encodings_pass_when_private_networks_are_allowed(url: str) -> None:
    validate(url, allow_private=True)


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("2002:5db8:d822::1", "93.184.216.34"),
        ("64:ff9b::5db8:d822", "93.184.216.34"),
        (TEREDO_LOOPBACK, "127.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("::7f00:1", "127.0.0.1"),
        ("2606:4700::1111", None),
        ("::1", None),
    ],
)
def test_the_ipv4_address_inside_an_ipv6_one_is_found(address: str, inner: str | None) -> None:
    found = netguard.embedded_ipv4(ipaddress.IPv6Address(address))
    assert (str(found) if found else None) == inner


def test_a_translated_public_address_is_a_target() -> None:
    # DNS64 answers on an IPv6-only network look like this; they reach a public IPv4 host.
    netguard.check_address(ipaddress.ip_address("64:ff9b::5db8:d822"), allow_private=False)


@pytest.mark.parametrize(
    ("answer", "allow_private"),
    [("fd00:ec2::254", True), ("2002:a9fe:a9fe::", True), ("fec0::1", False)],
)
def test_resolved_addresses_get_the_same_check(answer: str, allow_private: bool) -> None:
    with pytest.raises(netguard.UnsafeTargetError):
        netguard.check_address(ipaddress.ip_address(answer), allow_private=allow_private)
