"""Which callback targets Paperboy may connect to."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class UnsafeTargetError(ValueError):
    """The URL or address is not an allowed callback target."""


def parse_ip(host: str) -> IPAddress | None:
    """The address a host literal stands for, in any spelling (`127.1`, `2130706433`,
    `0x7f000001`, `[::ffff:127.0.0.1]`), or None for a name."""
    host = host.strip("[]")
    address: IPAddress | None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = _legacy_ipv4(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    # inet_aton accepts the short, decimal, octal and hex forms that HTTP clients resolve too.
    if not host or not all(c.isalnum() or c == "." for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def check_address(address: IPAddress, *, allow_private: bool) -> None:
    if address.is_link_local:
        raise UnsafeTargetError(f"link-local address {address} is never a callback target")
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        raise UnsafeTargetError(f"address {address} is not a callback target")
    if (address.is_loopback or address.is_private or not address.is_global) and not allow_private:
        raise UnsafeTargetError(
            f"private or loopback address {address} is refused "
            "(CALLBACK_ALLOW_PRIVATE_NETWORKS is off)"
        )


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a callback URL that is malformed or names a forbidden host literally.

    Host names are checked again after DNS resolution at delivery time.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTargetError(f"URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeTargetError("URL scheme must be http or https")
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UnsafeTargetError(f"URL is malformed: {exc}") from exc
    if not host:
        raise UnsafeTargetError("URL has no host")
    if parts.username or parts.password:
        raise UnsafeTargetError("URL must not carry credentials")
    address = parse_ip(host)
    if address is not None:
        check_address(address, allow_private=allow_private)
    elif (host.rstrip(".").lower() in LOCAL_NAMES or host.endswith(".localhost")) and not (
        allow_private
    ):
        raise UnsafeTargetError(f"host {host} is loopback")
