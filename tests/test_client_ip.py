"""Which address a join is counted against: the peer, or X-Forwarded-For behind a proxy the
gateway was told to trust, and never an address a client merely claims."""

from __future__ import annotations

import pytest

from gateway.client_ip import ClientAddress, TrustedProxies, parse_networks

PROXIES = TrustedProxies(parse_networks("10.0.0.0/8, 2001:db8:1::/48"))
NOBODY = TrustedProxies()


def public(address: str, subnet: str) -> ClientAddress:
    return ClientAddress(address, subnet, public=True)


@pytest.mark.parametrize(
    ("proxies", "peer", "forwarded", "expected"),
    [
        # No trusted proxies: the header is ignored, whoever sends it.
        (NOBODY, "81.2.3.4", ["1.1.1.1"], public("81.2.3.4", "81.2.3.0/24")),
        # A trusted proxy: the address it saw the client connect from.
        (PROXIES, "10.0.0.5", ["81.2.3.4"], public("81.2.3.4", "81.2.3.0/24")),
        # What the client wrote itself (left of the proxy's entry) proves nothing.
        (PROXIES, "10.0.0.5", ["1.1.1.1, 81.2.3.4"], public("81.2.3.4", "81.2.3.0/24")),
        # Two trusted hops, and the header split over two lines.
        (PROXIES, "10.0.0.5", ["81.2.3.4", "10.9.9.9"], public("81.2.3.4", "81.2.3.0/24")),
        # A peer that is not a trusted proxy: its own address, header or not.
        (PROXIES, "81.2.3.4", ["1.1.1.1"], public("81.2.3.4", "81.2.3.0/24")),
        # Garbage in the chain: stop at the last trusted proxy (never count by a made-up one).
        (PROXIES, "10.0.0.5", ["81.2.3.4, not-an-ip"], ClientAddress("10.0.0.5", "10.0.0.0/24")),
        # IPv6: the /64 is the subnet; ports and brackets are tolerated.
        (
            PROXIES,
            "2001:db8:1::7",
            ["[2a00:1028:8000:1:aaaa::1]:443"],
            public("2a00:1028:8000:1:aaaa::1", "2a00:1028:8000:1::/64"),
        ),
        (PROXIES, "10.0.0.5", ["81.2.3.4:5555"], public("81.2.3.4", "81.2.3.0/24")),
        # A dual-stack socket's IPv4 client is an IPv4 client.
        (NOBODY, "::ffff:81.2.3.4", [], public("81.2.3.4", "81.2.3.0/24")),
        # Loopback and private peers are not public: not counted (see client_ip.py).
        (NOBODY, "127.0.0.1", [], ClientAddress("127.0.0.1", "127.0.0.0/24")),
        (NOBODY, None, [], ClientAddress("unknown", "unknown")),
        (NOBODY, "testclient", [], ClientAddress("unknown", "unknown")),
    ],
)
def test_the_client_address(
    proxies: TrustedProxies, peer: str | None, forwarded: list[str], expected: ClientAddress
) -> None:
    assert proxies.client(peer, forwarded) == expected


def test_a_bad_cidr_names_itself() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300/8'"):
        parse_networks("10.0.0.0/8,10.0.0.300/8")
