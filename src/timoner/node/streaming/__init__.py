"""Streaming protocols the node agent serves for kubectl exec, attach and port-forward.

- ``spdy_frames``: sans-I/O SPDY/3.1 frame codec with the SPDY/3 zlib dictionary.
- ``spdy``: ``SpdySession``/``SpdyStream`` over any ``ByteTransport``.
- ``transport``: the byte pipes a session runs on (asyncio streams, WebSocket messages).
- ``remotecommand``: exec/attach streams over SPDY and their final Status.
- ``portforward``: pairing of port-forward data/error streams over SPDY.
- ``channels``: the WebSocket ``v4``/``v5.channel.k8s.io`` encodings.
- ``websocket``: the server side of a WebSocket on asyncio streams (``websockets``' sans-I/O framing).
- ``commandio``: one exec/attach's streams, over SPDY or WebSocket channels alike.

Nothing here touches processes or sockets of a pod: the node agent glues these
to its runtime.
"""

from timoner.node.streaming.portforward import serve_port_forward
from timoner.node.streaming.remotecommand import ExecOptions, RemoteCommandStreams, collect_streams
from timoner.node.streaming.spdy import SpdySession, SpdyStream, StreamClosedError
from timoner.node.streaming.transport import ByteTransport, MessageTransport, StreamTransport

__all__ = [
    "ByteTransport",
    "ExecOptions",
    "MessageTransport",
    "RemoteCommandStreams",
    "SpdySession",
    "SpdyStream",
    "StreamClosedError",
    "StreamTransport",
    "collect_streams",
    "serve_port_forward",
]
