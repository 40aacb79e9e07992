"""The WebSocket channel protocols (``v4``/``v5.channel.k8s.io``) and their port-forward forms.

exec/attach: every binary message is one channel byte then payload — 0 stdin,
1 stdout, 2 stderr, 3 error (the final Status JSON), 4 resize. v5 adds one
control message, ``[255, id]``, that half-closes channel ``id`` (kubectl sends
``[255, 0]`` at stdin EOF; v4 has no way to signal it).

port-forward (the Python client's ``v4.channel.k8s.io`` to ``?ports=a,b``):
port index i uses channel 2i for data and 2i+1 for errors, and the first
message the server sends on each of those channels is the port number as two
little-endian bytes.

kubectl's own WebSocket port-forward, ``SPDY/3.1+portforward.k8s.io``, is SPDY
inside binary messages: run ``SpdySession`` over ``MessageTransport``.

Everything here is pure: encode to and decode from message bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
PORT_FORWARD_SPDY_WS = "SPDY/3.1+portforward.k8s.io"
EXEC_PROTOCOLS = (V5, V4)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255


class ChannelError(ValueError):
    """A message that does not fit the channel protocol."""


@dataclass(frozen=True, slots=True)
class Data:
    """Payload on one channel."""

    channel: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """v5 half-close of one channel."""

    channel: int


def select_protocol(offered: list[str], supported: tuple[str, ...] = EXEC_PROTOCOLS) -> str | None:
    """Our preferred protocol among ``Sec-WebSocket-Protocol`` values the client offered."""
    wanted = {p.strip() for value in offered for p in value.split(",")}
    return next((p for p in supported if p in wanted), None)


def encode(channel: int, data: bytes) -> bytes:
    if not 0 <= channel < CLOSE:
        raise ChannelError(f"channel {channel} out of range")
    return bytes([channel]) + data


def encode_close(channel: int) -> bytes:
    return bytes([CLOSE, channel])


def decode(message: bytes, *, protocol: str = V5) -> Data | Close:
    """One binary message; CLOSE is only legal in v5."""
    if not message:
        raise ChannelError("empty channel message")
    if message[0] == CLOSE:
        if protocol != V5:
            raise ChannelError(f"CLOSE is not part of {protocol}")
        if len(message) != 2:
            raise ChannelError("CLOSE carries exactly one channel byte")
        return Close(message[1])
    return Data(message[0], bytes(message[1:]))


# -- port-forward over v4.channel.k8s.io ---------------------------------------


@dataclass(frozen=True, slots=True)
class PortChannel:
    """Which forwarded port a channel belongs to and whether it is its error channel."""

    port_index: int
    error: bool


def port_channel(channel: int) -> PortChannel:
    return PortChannel(port_index=channel // 2, error=channel % 2 == 1)


def data_channel(port_index: int) -> int:
    return 2 * port_index


def error_channel(port_index: int) -> int:
    return 2 * port_index + 1


def port_prefix_messages(ports: list[int]) -> list[bytes]:
    """The opening messages: each port's number (2 bytes LE) on its data and error channels."""
    messages = []
    for i, port in enumerate(ports):
        if not 0 < port < 65536:
            raise ChannelError(f"port {port} out of range")
        raw = port.to_bytes(2, "little")
        messages += [encode(data_channel(i), raw), encode(error_channel(i), raw)]
    return messages


def parse_ports(query_values: list[str]) -> list[int]:
    """``?ports=8080,9090`` (or repeated) → [8080, 9090]."""
    ports = []
    for value in query_values:
        for item in value.split(","):
            if not item.strip().isdigit() or not 0 < int(item) < 65536:
                raise ChannelError(f"invalid port {item!r}")
            ports.append(int(item))
    return ports
