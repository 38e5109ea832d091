"""Who is joining: the client's address, and the subnet its join limits are counted against.

The address is the connection's peer, unless that peer is a proxy the gateway is told to
trust (WAITROOM_TRUSTED_PROXIES, CIDRs). Then it is read from X-Forwarded-For, right to
left, skipping trusted proxies: the first address not in the list is the client. Anything to
its left was written by the client itself and proves nothing. Without the setting the header
is ignored, so nobody can claim another address just by sending it.

uvicorn has its own version of this for the addresses in its `--forwarded-allow-ips` (default
127.0.0.1 only): it rewrites the peer before the gateway sees it. The two compose: an address
uvicorn has already put in place of its proxy is the client's, and not in the trusted list.

The subnet is the /24 of an IPv4 address and the /64 of an IPv6 one: what one household,
phone or small server usually has to itself. A bot that rotates addresses inside its /64
(2^64 of them) or its /24 still counts as one subnet.

Only public (globally routable) addresses are counted. A loopback or private peer is almost
always a proxy or load balancer the gateway was not told about, and counting it would put
every visitor behind it on one counter: the line would close to newcomers within minutes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
UNKNOWN = "unknown"  # no usable peer address (a unix socket, a test client)


def parse_networks(spec: str, setting: str = "WAITROOM_TRUSTED_PROXIES") -> tuple[Network, ...]:
    """Comma-separated CIDRs or single addresses; raises ValueError naming the bad one."""
    networks = []
    for item in spec.split(","):
        if item := item.strip():
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError(f"{setting}: {item!r} is not an address or CIDR") from exc
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address


@dataclass(frozen=True, slots=True)
class ClientAddress:
    address: str
    subnet: str
    public: bool = False  # globally routable: a client's own address, not a proxy's


def subnet_of(address: Address) -> str:
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class TrustedProxies:
    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)

    def trusted(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> ClientAddress:
        """The client behind `peer`, given the X-Forwarded-For header values in order."""
        address = _address(peer) if peer else None
        if address is not None and self.networks and self.trusted(address):
            hops = [hop for value in forwarded_for for hop in value.split(",")]
            for hop in reversed(hops):
                found = _address(hop)
                if found is None:
                    break  # garbage in the chain: stop at the last proxy we trust
                address = found
                if not self.trusted(found):
                    break
        if address is None:
            return ClientAddress(UNKNOWN, UNKNOWN)
        return ClientAddress(str(address), subnet_of(address), address.is_global)
