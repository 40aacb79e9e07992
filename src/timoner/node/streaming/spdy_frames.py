"""SPDY/3.1 frames: the wire codec kubectl's SPDY transport speaks.

kubectl (through ``moby/spdystream`` and the ``spdy`` framer it vendors) carries
exec, attach and port-forward over SPDY/3.1. This module is sans-I/O: a
``FrameEncoder`` turns frame dataclasses into bytes and a ``FrameDecoder``
turns fed bytes into frames. Each owns one zlib context for name/value header
blocks, because SPDY compresses every header block of one direction of a
connection as a single continuous deflate stream primed with the SPDY/3
dictionary and cut with Z_SYNC_FLUSH after each block. A connection therefore
needs exactly one encoder and one decoder, used in wire order.

Layouts (draft-mbelshe-httpbis-spdy-00 / SPDY/3.1 draft):

    control: |1|version(15)|type(16)|flags(8)|length(24)|payload
    data:    |0|stream-id(31)|flags(8)|length(24)|payload

Header block (before compression): count(32) then, per pair, len(32) name
len(32) value; several values for one name are joined with NUL.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

VERSION = 3

# Control frame types.
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR = 0x01

# RST_STREAM status codes.
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
UNSUPPORTED_VERSION = 4
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7
STREAM_IN_USE = 8
STREAM_ALREADY_CLOSED = 9
FRAME_TOO_LARGE = 11

# GOAWAY status codes.
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1
GOAWAY_INTERNAL_ERROR = 2

# SETTINGS ids we care about.
SETTINGS_MAX_CONCURRENT_STREAMS = 4
SETTINGS_INITIAL_WINDOW_SIZE = 7

MAX_LENGTH = 0xFFFFFF  # 24-bit length field
MAX_STREAM_ID = 0x7FFFFFFF

# The SPDY/3 zlib dictionary: length-prefixed header words, then a raw tail of
# status codes, months, days and media types. Built rather than pasted so the
# structure is reviewable; its Adler-32 (0xe3c6a7c2, the dictionary id that
# kubectl's zlib header carries) is pinned by a test.
_DICTIONARY_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date "
    "etag expect expires from host if-match if-modified-since if-none-match if-range "
    "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
    "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = (
    b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) + _DICTIONARY_TAIL.encode()
)

Headers = tuple[tuple[str, str], ...]
"""Header pairs as on the wire: lower-case names, one entry per name,
several values joined with NUL."""


class SpdyProtocolError(Exception):
    """The peer sent bytes that are not valid SPDY/3.1; the session must end."""


@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    data: bytes = b""
    fin: bool = False


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: Headers = ()
    associated_to: int = 0
    priority: int = 0
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: Headers = ()
    fin: bool = False


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Setting:
    id: int
    value: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[Setting, ...] = ()
    clear: bool = False


@dataclass(frozen=True, slots=True)
class Ping:
    id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True, slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = ()
    fin: bool = False


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = (
    DataFrame | SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate
)


def header_value(headers: Headers, name: str) -> str | None:
    """The first value of ``name`` (case-insensitive), or None."""
    name = name.lower()
    for key, value in headers:
        if key == name:
            return value.split("\0", 1)[0]
    return None


def make_headers(pairs: dict[str, str | list[str]] | Headers) -> Headers:
    """Normalise headers for the wire: lower-case names, duplicates merged with NUL.

    Go's framer rejects a block that names a header twice, so merging here is
    what keeps a caller's ``[("a", "1"), ("A", "2")]`` legal.
    """
    items = pairs.items() if isinstance(pairs, dict) else pairs
    merged: dict[str, list[str]] = {}
    for name, value in items:
        values = value if isinstance(value, list) else [value]
        merged.setdefault(name.lower(), []).extend(values)
    return tuple((name, "\0".join(values)) for name, values in merged.items())


def _encode_block(headers: Headers) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def _decode_block(raw: bytes) -> Headers:
    try:
        (count,) = struct.unpack_from(">I", raw, 0)
        pos, pairs, seen = 4, [], set()
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, pos)
            name = raw[pos + 4 : pos + 4 + n]
            pos += 4 + n
            (v,) = struct.unpack_from(">I", raw, pos)
            value = raw[pos + 4 : pos + 4 + v]
            pos += 4 + v
            if len(name) != n or len(value) != v or not name:
                raise SpdyProtocolError("truncated header block")
            key = name.decode().lower()
            if key in seen:
                raise SpdyProtocolError(f"header {key!r} repeated")
            seen.add(key)
            pairs.append((key, value.decode()))
    except (struct.error, UnicodeDecodeError) as exc:
        raise SpdyProtocolError(f"malformed header block: {exc}") from exc
    if pos != len(raw):
        raise SpdyProtocolError("trailing bytes after header block")
    return tuple(pairs)


def _control(ftype: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise ValueError("control frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


class FrameEncoder:
    """Encodes frames for one direction of one connection (owns the deflate context)."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 9, zdict=DICTIONARY)

    def _headers(self, headers: Headers) -> bytes:
        raw = _encode_block(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case DataFrame(stream_id=sid, data=data, fin=fin):
                if len(data) > MAX_LENGTH:
                    raise ValueError("data frame too large; split it")
                return struct.pack(">II", sid & MAX_STREAM_ID, (FLAG_FIN if fin else 0) << 24 | len(data)) + data
            case SynStream():
                flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
                head = struct.pack(
                    ">IIBB", frame.stream_id, frame.associated_to, (frame.priority & 7) << 5, frame.slot
                )
                return _control(SYN_STREAM, flags, head + self._headers(frame.headers))
            case SynReply(stream_id=sid, headers=headers, fin=fin):
                return _control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", sid) + self._headers(headers))
            case HeadersFrame(stream_id=sid, headers=headers, fin=fin):
                return _control(HEADERS, FLAG_FIN if fin else 0, struct.pack(">I", sid) + self._headers(headers))
            case RstStream(stream_id=sid, status=status):
                return _control(RST_STREAM, 0, struct.pack(">II", sid, status))
            case Settings(entries=entries, clear=clear):
                body = struct.pack(">I", len(entries)) + b"".join(
                    struct.pack(">II", (e.flags << 24) | e.id, e.value) for e in entries
                )
                return _control(SETTINGS, FLAG_SETTINGS_CLEAR if clear else 0, body)
            case Ping(id=pid):
                return _control(PING, 0, struct.pack(">I", pid))
            case GoAway(last_good_stream_id=last, status=status):
                return _control(GOAWAY, 0, struct.pack(">II", last, status))
            case WindowUpdate(stream_id=sid, delta=delta):
                return _control(WINDOW_UPDATE, 0, struct.pack(">II", sid, delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")


class FrameDecoder:
    """Turns a byte stream into frames (owns the inflate context).

    ``feed`` accepts any chunking: partial frames wait in the buffer, so the
    same decoder works over a TCP stream and over WebSocket messages.
    """

    def __init__(self, *, max_frame: int = MAX_LENGTH) -> None:
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._buf = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            (word, flags_len) = struct.unpack_from(">II", self._buf, 0)
            length = flags_len & MAX_LENGTH
            if length > self._max_frame:
                raise SpdyProtocolError(f"frame of {length} bytes exceeds limit")
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            frame = self._parse(word, flags_len >> 24, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _headers(self, block: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as exc:
            raise SpdyProtocolError(f"header block does not inflate: {exc}") from exc
        return _decode_block(raw)

    def _parse(self, word: int, flags: int, p: bytes) -> Frame | None:
        if not word & 0x80000000:
            return DataFrame(stream_id=word, data=p, fin=bool(flags & FLAG_FIN))
        version, ftype = (word >> 16) & 0x7FFF, word & 0xFFFF
        if version != VERSION:
            raise SpdyProtocolError(f"unsupported SPDY version {version}")
        fin = bool(flags & FLAG_FIN)
        try:
            if ftype == SYN_STREAM:
                sid, assoc, pri, slot = struct.unpack_from(">IIBB", p, 0)
                return SynStream(
                    stream_id=sid & MAX_STREAM_ID,
                    headers=self._headers(p[10:]),
                    associated_to=assoc & MAX_STREAM_ID,
                    priority=pri >> 5,
                    slot=slot,
                    fin=fin,
                    unidirectional=bool(flags & FLAG_UNIDIRECTIONAL),
                )
            if ftype in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", p, 0)
                kind = SynReply if ftype == SYN_REPLY else HeadersFrame
                return kind(stream_id=sid & MAX_STREAM_ID, headers=self._headers(p[4:]), fin=fin)
            if ftype in (RST_STREAM, GOAWAY, WINDOW_UPDATE):
                if len(p) != 8:
                    raise SpdyProtocolError(f"control frame {ftype} must be 8 bytes, got {len(p)}")
                a, b = struct.unpack(">II", p)
                if ftype == RST_STREAM:
                    return RstStream(stream_id=a & MAX_STREAM_ID, status=b)
                if ftype == GOAWAY:
                    return GoAway(last_good_stream_id=a & MAX_STREAM_ID, status=b)
                return WindowUpdate(stream_id=a & MAX_STREAM_ID, delta=b & MAX_STREAM_ID)
            if ftype == PING:
                if len(p) != 4:
                    raise SpdyProtocolError("PING must be 4 bytes")
                return Ping(id=struct.unpack(">I", p)[0])
            if ftype == SETTINGS:
                (count,) = struct.unpack_from(">I", p, 0)
                if len(p) != 4 + 8 * count:
                    raise SpdyProtocolError("SETTINGS length does not match its entry count")
                entries = []
                for i in range(count):
                    fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append(Setting(id=fid & MAX_LENGTH, value=value, flags=fid >> 24))
                return Settings(entries=tuple(entries), clear=bool(flags & FLAG_SETTINGS_CLEAR))
        except struct.error as exc:
            raise SpdyProtocolError(f"short control frame {ftype}: {exc}") from exc
        # Unknown control types (NOOP, CREDENTIAL) must be ignored, per the spec.
        return None
