"""Which callback targets Paperboy may connect to."""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from urllib.parse import urlsplit

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# Cloud instance-metadata endpoints hand out credentials; no deployment posts callbacks to them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")
# Underscores are not valid in host names but are common in DNS records, so they pass here.
ASCII_LABEL = re.compile(r"[a-z0-9_-]+")


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
    if not host or not all(c.isascii() and (c.isalnum() or c == ".") for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def normalise_host(host: str) -> str:
    """The host as it is looked up: NFKC-folded (full-width digits and dots become ASCII),
    lower-case, without one trailing dot, and names in their IDNA 2008 ASCII form.

    Raises UnsafeTargetError for a name DNS could not carry (an empty label, a label over 63
    or a name over 253 characters, a code point IDNA refuses).
    """
    host = unicodedata.normalize("NFKC", host).lower()
    host = host.removesuffix(".")
    if parse_ip(host) is not None:
        return host
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise UnsafeTargetError(f"host is not a valid internationalised name: {exc}") from exc
    _check_labels(host)
    return host


def _check_labels(host: str) -> None:
    if len(host) > MAX_HOST_LENGTH:
        raise UnsafeTargetError(f"host is longer than {MAX_HOST_LENGTH} characters")
    for label in host.split("."):
        if not label:
            raise UnsafeTargetError("host has an empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise UnsafeTargetError(f"host has a label longer than {MAX_LABEL_LENGTH} characters")
        if not ASCII_LABEL.fullmatch(label):
            raise UnsafeTargetError(f"host label {label[:20]!r} has characters a name cannot")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client, already un-XOR-ed
    if address in NAT64 or (address in IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check_address(address: IPAddress, *, allow_private: bool) -> None:
    """Refuse an address that is, or carries, a forbidden one."""
    inner = embedded_ipv4(address)
    if inner is not None:
        _check_one(inner, f"{inner} (inside {address})", allow_private=allow_private)
        if address in NAT64:
            return  # a translator's prefix: only the IPv4 address behind it is reached
    _check_one(address, str(address), allow_private=allow_private)


def _check_one(address: IPAddress, shown: str, *, allow_private: bool) -> None:
    if address in METADATA_ADDRESSES:
        raise UnsafeTargetError(f"cloud metadata address {shown} is never a callback target")
    if address.is_link_local:
        raise UnsafeTargetError(f"link-local address {shown} is never a callback target")
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        raise UnsafeTargetError(f"address {shown} is not a callback target")
    if _is_private(address) and not allow_private:
        raise UnsafeTargetError(
            f"private or loopback address {shown} is refused "
            "(CALLBACK_ALLOW_PRIVATE_NETWORKS is off)"
        )


def _is_private(address: IPAddress) -> bool:
    site_local = isinstance(address, ipaddress.IPv6Address) and address in SITE_LOCAL
    return address.is_loopback or address.is_private or not address.is_global or site_local


def check_url(url: str, *, allow_private: bool) -> str:
    """Refuse a callback URL that is malformed or names a forbidden host literally, and
    return its host as `normalise_host` spells it.

    Host names are checked again after DNS resolution at delivery time.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTargetError(f"URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeTargetError("URL scheme must be http or https")
    try:
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UnsafeTargetError(f"URL is malformed: {exc}") from exc
    if not hostname:
        raise UnsafeTargetError("URL has no host")
    if parts.username or parts.password:
        raise UnsafeTargetError("URL must not carry credentials")
    host = normalise_host(hostname)
    address = parse_ip(host)
    if address is not None:
        check_address(address, allow_private=allow_private)
    elif _is_local_name(host) and not allow_private:
        raise UnsafeTargetError(f"host {host} is loopback")
    return host


def _is_local_name(host: str) -> bool:
    return host in LOCAL_NAMES or host.endswith(".localhost")
