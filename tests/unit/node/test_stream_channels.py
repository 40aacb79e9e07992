"""WebSocket channel encodings for exec/attach (v4/v5) and the v4 port-forward form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.node.streaming import channels as ch


@pytest.mark.parametrize(
    ("message", "protocol", "decoded"),
    [
        (b"\x00abc", ch.V5, ch.Data(ch.STDIN, b"abc")),
        (b"\x01", ch.V4, ch.Data(ch.STDOUT, b"")),
        (b'\x04{"Width":1,"Height":2}', ch.V4, ch.Data(ch.RESIZE, b'{"Width":1,"Height":2}')),
        (b"\xff\x00", ch.V5, ch.Close(ch.STDIN)),
    ],
)
def test_decode(message: bytes, protocol: str, decoded) -> None:
    assert ch.decode(message, protocol=protocol) == decoded


@pytest.mark.parametrize(("message", "protocol"), [(b"", ch.V5), (b"\xff\x00", ch.V4), (b"\xff\x00\x01", ch.V5)])
def test_decode_rejects(message: bytes, protocol: str) -> None:
    with pytest.raises(ch.ChannelError):
        ch.decode(message, protocol=protocol)


@given(st.integers(0, 254), st.binary())
def test_data_round_trip(channel: int, data: bytes) -> None:
    assert ch.decode(ch.encode(channel, data)) == ch.Data(channel, data)


def test_close_signal_and_protocol_selection() -> None:
    assert ch.encode_close(0) == b"\xff\x00"
    assert ch.select_protocol(["v4.channel.k8s.io, v5.channel.k8s.io"]) == ch.V5
    assert ch.select_protocol(["v4.channel.k8s.io"]) == ch.V4
    assert ch.select_protocol(["base64.channel.k8s.io"]) is None
    assert ch.select_protocol([ch.PORT_FORWARD_SPDY_WS], (ch.PORT_FORWARD_SPDY_WS,)) == ch.PORT_FORWARD_SPDY_WS


def test_port_forward_channels() -> None:
    assert ch.parse_ports(["8080,9090", "53"]) == [8080, 9090, 53]
    assert ch.port_prefix_messages([8080, 53]) == [b"\x00\x90\x1f", b"\x01\x90\x1f", b"\x02\x35\x00", b"\x03\x35\x00"]
    assert ch.port_channel(3) == ch.PortChannel(port_index=1, error=True)
    assert (ch.data_channel(2), ch.error_channel(2)) == (4, 5)
    with pytest.raises(ch.ChannelError):
        ch.parse_ports(["0"])
