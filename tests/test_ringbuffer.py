"""RingBuffer: absolute indices, wrap-around, eviction, gaps, and a real writer/reader pair."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glmasr_live.audio.ringbuffer import EvictedError, RingBuffer, RingClosedError
from glmasr_live.events import AudioGap

# Operations: ("w", n) writes n samples of a ramp; ("g", n) marks a gap of n samples.
ops_strategy = st.lists(
    st.tuples(st.sampled_from(["w", "w", "w", "g"]), st.integers(min_value=0, max_value=70)),
    max_size=40,
)


def ramp(start: int, n: int) -> np.ndarray:
    # Sample value = its absolute index + 1 (exact in float32 below 2**24; 0 is kept for gaps).
    return np.arange(start + 1, start + n + 1, dtype=np.float32)


def apply(ring: RingBuffer, ops: list[tuple[str, int]]) -> tuple[np.ndarray, list[AudioGap]]:
    """Run ``ops`` on ``ring`` and on a plain array model; return the model and the gaps."""
    model: list[np.ndarray] = []
    gaps = []
    for op, n in ops:
        start = ring.write_index
        if op == "w":
            ring.write(ramp(start, n))
            model.append(ramp(start, n))
        else:
            gaps.append(ring.mark_gap(n, "test"))
            model.append(np.zeros(n, np.float32))
    return (np.concatenate(model) if model else np.zeros(0, np.float32)), gaps


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 100), ops=ops_strategy, data=st.data())
def test_matches_model_and_evicts(capacity: int, ops: list[tuple[str, int]], data: st.DataObject) -> None:
    ring = RingBuffer(capacity)
    model, _ = apply(ring, ops)
    total = len(model)
    assert ring.write_index == total
    assert ring.oldest_index == max(0, total - capacity)
    for _ in range(5):
        start = data.draw(st.integers(0, total))
        end = data.draw(st.integers(start, total))
        if start < total - capacity:
            with pytest.raises(EvictedError):
                ring.read(start, end)
        else:
            np.testing.assert_array_equal(ring.read(start, end), model[start:end])


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 100), ops=ops_strategy, probe=st.integers(0, 3000))
def test_gaps_recorded_where_zeros_are(capacity: int, ops: list[tuple[str, int]], probe: int) -> None:
    ring = RingBuffer(capacity)
    _, gaps = apply(ring, ops)
    assert ring.dropped_samples == sum(g.missing for g in gaps)
    assert [g.sample - g.missing for g in gaps] == sorted(g.sample - g.missing for g in gaps)
    assert ring.gaps_since(-1) == gaps
    assert ring.gaps_since(probe) == [g for g in gaps if g.sample > probe]
    for g in gaps:
        lo = max(g.sample - g.missing, ring.oldest_index)
        if lo < g.sample:
            assert not ring.read(lo, g.sample).any()


def test_read_is_a_copy_and_range_checked() -> None:
    ring = RingBuffer(8)
    ring.write(ramp(0, 5))
    out = ring.read(1, 4)
    out[:] = -1
    np.testing.assert_array_equal(ring.read(1, 4), [2, 3, 4])
    with pytest.raises(ValueError):
        ring.read(3, 6)  # not written yet
    with pytest.raises(ValueError):
        ring.read(4, 3)
    with pytest.raises(ValueError):
        ring.write(np.zeros((2, 2), np.float32))


def test_oversized_write_keeps_the_tail() -> None:
    ring = RingBuffer(10)
    ring.write(ramp(0, 25))
    assert ring.write_index == 25
    np.testing.assert_array_equal(ring.read(15, 25), ramp(15, 10))
    with pytest.raises(EvictedError):
        ring.read(14, 25)


def test_huge_gap_zeroes_everything() -> None:
    ring = RingBuffer(10)
    ring.write(ramp(0, 10))
    gap = ring.mark_gap(1000, "device lost")
    assert gap == AudioGap(sample=1010, missing=1000, reason="device lost")
    assert not ring.read(1000, 1010).any()


def test_wait_for_times_out_and_close_wakes() -> None:
    ring = RingBuffer(16)
    assert not ring.wait_for(1, timeout=0.01)
    woke = threading.Event()
    result: list[bool] = []

    def waiter() -> None:
        result.append(ring.wait_for(100))  # no timeout: only close can end this
        woke.set()

    t = threading.Thread(target=waiter, name="test-waiter")
    t.start()
    ring.write(ramp(0, 4))
    assert not woke.wait(0.05)  # 4 samples are not 100
    ring.close()
    assert woke.wait(5)
    t.join(5)
    assert result == [False] and ring.closed
    with pytest.raises(RingClosedError):
        ring.write(ramp(4, 1))
    np.testing.assert_array_equal(ring.read(0, 4), ramp(0, 4))  # still readable after close


def test_backpressure_for_lossless_reader() -> None:
    ring = RingBuffer(10)
    assert ring.wait_for_room(10, timeout=0)  # nobody asked for backpressure
    ring.advance_reader(0)
    ring.write(ramp(0, 8))
    assert not ring.wait_for_room(3, timeout=0.01)
    ring.advance_reader(1)
    assert ring.wait_for_room(3, timeout=0)
    cancel = threading.Event()
    cancel.set()
    assert not ring.wait_for_room(5, timeout=None, cancel=cancel)


@settings(max_examples=15, deadline=None)
@given(
    blocks=st.lists(st.integers(1, 300), min_size=50, max_size=200),
    read_size=st.integers(1, 400),
    capacity=st.integers(400, 2000),
)
def test_writer_and_reader_threads(blocks: list[int], read_size: int, capacity: int) -> None:
    """A producer thread writes a ramp while a reader follows it: every sample the reader gets is
    exactly right, and a reader that falls behind gets EvictedError, never wrong samples."""
    ring = RingBuffer(capacity)
    errors: list[BaseException] = []
    checked = [0, 0]  # samples verified, evictions seen

    def writer() -> None:
        pos = 0
        for n in blocks:
            ring.write(ramp(pos, n))
            pos += n
        ring.close()

    def reader() -> None:
        try:
            pos = 0
            while True:
                got = ring.wait_for(pos + read_size, timeout=10)
                end = min(pos + read_size, ring.write_index)
                if not got and end <= pos:
                    assert ring.closed, "reader timed out waiting for the writer"
                    return
                try:
                    chunk = ring.read(pos, end)
                except EvictedError:
                    checked[1] += 1
                    pos = ring.oldest_index + capacity // 2  # skip ahead past the loss
                    pos = min(pos, ring.write_index)
                    continue
                np.testing.assert_array_equal(chunk, ramp(pos, end - pos))
                checked[0] += end - pos
                pos = end
        except BaseException as e:  # surfaced in the test thread below
            errors.append(e)

    threads = [
        threading.Thread(target=reader, name="test-reader"),
        threading.Thread(target=writer, name="test-writer"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]
    assert checked[0] > 0 and checked[0] + checked[1] > 0
