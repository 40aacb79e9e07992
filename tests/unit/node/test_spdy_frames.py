"""SPDY/3.1 frame codec: layouts, header compression with the SPDY/3 dictionary, round-trips."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.node.streaming import spdy_frames as f

# A SYN_STREAM kubectl sent (stream 1, "streamtype: stdout"), captured on the wire:
# its zlib header carries dictionary id 0xe3c6a7c2.
KUBECTL_SYN_STREAM = bytes.fromhex(
    "80030001" "0000002b" "00000001" "00000000" "0000"
    "78f9e3c6a7c2" "62606060" "04a7b392" "a2d4c45c" "6851c256" "5c92925f" "5a020000" "00ffff"
)


def test_dictionary_is_the_spdy3_one() -> None:
    assert len(f.DICTIONARY) == 1423
    assert zlib.adler32(f.DICTIONARY) == 0xE3C6A7C2
    assert f.DICTIONARY.startswith(b"\x00\x00\x00\x07options") and f.DICTIONARY.endswith(b"enq=0.")


def test_decodes_a_frame_kubectl_sent() -> None:
    (frame,) = f.FrameDecoder().feed(KUBECTL_SYN_STREAM)
    assert frame == f.SynStream(stream_id=1, headers=(("streamtype", "stdout"),))


@pytest.mark.parametrize(
    ("frame", "wire_prefix"),
    [
        (f.DataFrame(5, b"abc", fin=True), b"\x00\x00\x00\x05\x01\x00\x00\x03abc"),
        (f.RstStream(3, f.CANCEL), b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x05"),
        (f.Ping(7), b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"),
        (f.GoAway(9, f.GOAWAY_OK), b"\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x09\x00\x00\x00\x00"),
        (f.WindowUpdate(1, 1000), b"\x80\x03\x00\x09\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x03\xe8"),
        (
            f.Settings((f.Setting(f.SETTINGS_INITIAL_WINDOW_SIZE, 65536, flags=1),), clear=True),
            b"\x80\x03\x00\x04\x01\x00\x00\x0c\x00\x00\x00\x01\x01\x00\x00\x07\x00\x01\x00\x00",
        ),
        (f.SynReply(1), b"\x80\x03\x00\x02\x00\x00\x00"),
        (f.SynStream(3, (("a", "b"),), priority=5, fin=True), b"\x80\x03\x00\x01\x01\x00\x00"),
        (f.HeadersFrame(3, (("x", "1\x002"),), fin=True), b"\x80\x03\x00\x08\x01\x00\x00"),
    ],
)
def test_layouts_and_round_trip(frame: f.Frame, wire_prefix: bytes) -> None:
    wire = f.FrameEncoder().encode(frame)
    assert wire.startswith(wire_prefix)
    assert struct.unpack(">I", wire[4:8])[0] & 0xFFFFFF == len(wire) - 8
    assert f.FrameDecoder().feed(wire) == [frame]


def test_header_blocks_share_one_compression_context_per_direction() -> None:
    enc, dec = f.FrameEncoder(), f.FrameDecoder()
    frames = [f.SynStream(i, (("streamtype", "data"), ("port", "8080"), ("requestid", str(i)))) for i in (1, 3, 5)]
    wires = [enc.encode(fr) for fr in frames]
    # The second block reuses the first block's history, so it is shorter...
    assert len(wires[1]) < len(wires[0])
    # ...and cannot be inflated by a fresh decoder that missed the first one.
    with pytest.raises(f.SpdyProtocolError):
        f.FrameDecoder().feed(wires[1])
    assert [fr for w in wires for fr in dec.feed(w)] == frames


def test_decoder_accepts_any_chunking() -> None:
    enc = f.FrameEncoder()
    frames = [f.SynStream(1, (("k", "v"),)), f.DataFrame(1, b"x" * 100), f.Ping(2), f.DataFrame(1, fin=True)]
    wire = b"".join(enc.encode(fr) for fr in frames)
    dec, out = f.FrameDecoder(), []
    for i in range(len(wire)):
        out += dec.feed(wire[i : i + 1])
    assert out == frames


@pytest.mark.parametrize(
    "wire",
    [
        b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01",  # SPDY/2
        b"\x80\x03\x00\x06\x00\x00\x00\x03\x00\x00\x00",  # short PING
        b"\x80\x03\x00\x03\x00\x00\x00\x04\x00\x00\x00\x01",  # short RST
        b"\x80\x03\x00\x02\x00\x00\x00\x06\x00\x00\x00\x01\xff\xff",  # garbage header block
    ],
)
def test_malformed_frames_are_protocol_errors(wire: bytes) -> None:
    with pytest.raises(f.SpdyProtocolError):
        f.FrameDecoder().feed(wire)


def test_unknown_control_frames_are_ignored() -> None:
    noop = b"\x80\x03\x00\x05\x00\x00\x00\x00"
    assert f.FrameDecoder().feed(noop + f.FrameEncoder().encode(f.Ping(1))) == [f.Ping(1)]


def test_make_headers_lowercases_and_merges_duplicates() -> None:
    hs = f.make_headers([("StreamType", "data"), ("X", "1"), ("x", "2")])
    assert hs == (("streamtype", "data"), ("x", "1\x002"))
    assert f.header_value(hs, "X") == "1"


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
values = st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40)
headers = st.dictionaries(names, values, max_size=6).map(lambda d: tuple(d.items()))
sid = st.integers(1, f.MAX_STREAM_ID)
frames = st.one_of(
    st.builds(f.DataFrame, sid, st.binary(max_size=300), st.booleans()),
    st.builds(f.SynStream, sid, headers, st.integers(0, f.MAX_STREAM_ID), st.integers(0, 7), st.integers(0, 255),
              st.booleans(), st.booleans()),
    st.builds(f.SynReply, sid, headers, st.booleans()),
    st.builds(f.HeadersFrame, sid, headers, st.booleans()),
    st.builds(f.RstStream, sid, st.integers(0, 2**32 - 1)),
    st.builds(f.Ping, st.integers(0, 2**32 - 1)),
    st.builds(f.GoAway, st.integers(0, f.MAX_STREAM_ID), st.integers(0, 2**32 - 1)),
    st.builds(f.WindowUpdate, sid, st.integers(1, f.MAX_STREAM_ID)),
    st.builds(f.Settings, st.lists(st.builds(f.Setting, st.integers(0, 0xFFFFFF), st.integers(0, 2**32 - 1),
                                             st.integers(0, 255)), max_size=4).map(tuple), st.booleans()),
)


@given(st.lists(frames, max_size=8))
def test_any_frame_sequence_round_trips_through_one_connection(seq: list[f.Frame]) -> None:
    enc, dec = f.FrameEncoder(), f.FrameDecoder()
    assert dec.feed(b"".join(enc.encode(fr) for fr in seq)) == seq
