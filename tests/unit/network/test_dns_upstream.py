"""Upstream resolver addresses: the configured forms and /etc/resolv.conf."""

from __future__ import annotations

import pytest

from timoner.network._dns_upstream import Upstream, parse_upstream, resolv_conf_nameservers
from timoner.network.dns import ClusterDNS


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.2", Upstream("10.0.0.2", 53)),
    ("127.0.0.1:5353", Upstream("127.0.0.1", 5353)),
    ("::1", Upstream("::1", 53)),
    ("[fd00::53]:5353", Upstream("fd00::53", 5353)),
    ("[fd00::53]", Upstream("fd00::53", 53)),
    ("fe80::1%eth0", Upstream("fe80::1%eth0", 53)),
])
def test_upstream_addresses(text, expected):
    assert parse_upstream(text) == expected


@pytest.mark.parametrize("text", ["dns.google", "1.2.3.4:0", "1.2.3.4:70000", "[::1", "[::1]x", "1.2.3.4:x"])
def test_bad_upstream_addresses(text):
    with pytest.raises(ValueError):
        parse_upstream(text)


def test_resolv_conf_nameservers_in_order(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# generated\nsearch example.com\nnameserver 10.0.0.2\noptions ndots:2\n"
                    "nameserver   fd00::53\nnameserver not-an-address\nnameserver\n")
    assert resolv_conf_nameservers(conf) == [Upstream("10.0.0.2"), Upstream("fd00::53")]
    assert resolv_conf_nameservers(tmp_path / "missing") == []


@pytest.mark.parametrize(("host", "kept"), [
    ("127.0.0.1", ["127.0.0.53:53", "127.0.0.1:5353", "10.0.0.2:53"]),  # only 127.0.0.1:53 is this server
    ("0.0.0.0", ["127.0.0.1:5353", "10.0.0.2:53"]),  # on every address, any loopback on port 53 is us
])
def test_the_server_never_forwards_to_itself(host, kept):
    server = ClusterDNS(None, host=host, port=53)  # type: ignore[arg-type]  # no API calls made here
    upstreams = [parse_upstream(u) for u in ("127.0.0.1", "127.0.0.53", "127.0.0.1:5353", "10.0.0.2")]
    assert [str(u) for u in server._without_self(upstreams)] == kept
