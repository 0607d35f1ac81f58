"""Property tests: chunking never changes what the converters and framer produce."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from telephony_bridge.dsp import Framer, InboundConverter, OutboundConverter


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return out


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=1500), cuts=st.lists(st.integers(0, 1500), max_size=12))
def test_inbound_any_chunking_equals_one_shot(data, cuts):
    whole = InboundConverter()
    expected = whole.convert(data) + whole.flush()
    conv = InboundConverter()
    got = b"".join(conv.convert(p) for p in split(data, cuts)) + conv.flush()
    assert got == expected
    assert len(got) - len(conv.flush()) >= 4 * len(data)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=4001), cuts=st.lists(st.integers(0, 4001), max_size=12))
def test_outbound_any_chunking_equals_one_shot_odd_bytes_included(data, cuts):
    whole = OutboundConverter()
    one_shot = whole.convert(data)
    expected = one_shot + whole.flush()
    conv = OutboundConverter()
    parts = [conv.convert(p) for p in split(data, cuts)]
    assert b"".join(parts) == one_shot
    assert b"".join(parts) + conv.flush() == expected
    assert len(one_shot) == (len(data) // 2) // 3


@settings(max_examples=100, deadline=None)
@given(
    turn1=st.binary(min_size=1, max_size=2000),
    cut=st.integers(0, 2000),
    turn2=st.binary(max_size=2000),
)
def test_outbound_reset_mid_turn_leaves_no_trace(turn1, cut, turn2):
    conv = OutboundConverter()
    conv.convert(turn1[:cut])
    conv.reset()
    assert conv.convert(turn2) == OutboundConverter().convert(turn2)


@settings(max_examples=100, deadline=None)
@given(turn1=st.binary(min_size=1, max_size=800), turn2=st.binary(max_size=800))
def test_inbound_reset_leaves_no_trace(turn1, turn2):
    conv = InboundConverter()
    conv.convert(turn1)
    conv.reset()
    assert conv.convert(turn2) == InboundConverter().convert(turn2)


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=500), max_size=20),
    size=st.integers(1, 400),
)
def test_framer_frames_are_exact_and_lossless(chunks, size):
    fr = Framer(size)
    frames = []
    for c in chunks:
        frames.extend(fr.push(c))
    assert all(len(f) == size for f in frames)
    data = b"".join(chunks)
    assert b"".join(frames) + fr.pending == data
    assert len(fr.pending) < size
