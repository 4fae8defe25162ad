"""The hand-off between an audio source and the stages that read it.

Samples are addressed by absolute index on the 16 kHz stream clock (sample ``i`` was captured
``i / 16000`` s after the stream started), so readers hold plain integers and never need to
know where in the circular storage a sample lives. One producer thread writes; any number of
reader threads read copies and block on :meth:`RingBuffer.wait_for` until enough audio exists.

Lost audio (overflows, a dead device) is written as zeros by :meth:`RingBuffer.mark_gap`, so
the index keeps following the stream clock, and an :class:`~glmasr_live.events.AudioGap` record
tells readers not to glue speech across it.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque

import numpy as np

from glmasr_live.events import SAMPLE_RATE, AudioGap

MAX_GAP_RECORDS = 4096
"""Gap records kept; older ones are forgotten (readers that far behind get EvictedError anyway)."""


class EvictedError(LookupError):
    """The requested samples were overwritten: the reader fell more than ``capacity`` behind."""


class RingClosedError(RuntimeError):
    """A write to a ring buffer after :meth:`RingBuffer.close`."""


class RingBuffer:
    """Preallocated circular float32 storage addressed by absolute int sample index.

    Thread model: exactly one producer calls :meth:`write` / :meth:`mark_gap` / :meth:`close`;
    readers call :meth:`read`, :meth:`wait_for`, :meth:`gaps_since` from any thread. Every
    method holds one lock for at most one memcpy, so the producer is never blocked for long.
    """

    def __init__(self, capacity: int, sample_rate: int = SAMPLE_RATE) -> None:
        self.nonfinite_samples = 0  # NaN/inf samples written, replaced (silence / full scale)
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._capacity = capacity
        self.sample_rate = sample_rate
        # Python ints never overflow; int64 would last 18 million years at 16 kHz anyway.
        self._end = 0
        self._closed = False
        self._gaps: deque[AudioGap] = deque(maxlen=MAX_GAP_RECORDS)
        self._dropped = 0
        # Position of a lossless reader (None: nobody asked for backpressure).
        self._reader: int | None = None
        self._cond = threading.Condition(threading.Lock())

    @classmethod
    def for_seconds(cls, seconds: float, sample_rate: int = SAMPLE_RATE) -> RingBuffer:
        return cls(int(round(seconds * sample_rate)), sample_rate)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def write_index(self) -> int:
        """Absolute index one past the newest sample (= samples written, gaps included)."""
        return self._end

    @property
    def oldest_index(self) -> int:
        """Absolute index of the oldest sample still readable."""
        return max(0, self._end - self._capacity)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped_samples(self) -> int:
        """Samples written as zeros by :meth:`mark_gap` so far."""
        return self._dropped

    @property
    def audio_clock(self) -> float:
        """Seconds of stream audio written so far."""
        return self._end / self.sample_rate

    def write(self, samples: np.ndarray) -> int:
        """Append mono samples (converted to float32); returns the new :attr:`write_index`."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"expected mono samples (1-D), got shape {x.shape}")
        bad = ~np.isfinite(x)
        if bad.any():  # the last edge before every stage: never let a NaN in
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
            self.nonfinite_samples += int(bad.sum())
        with self._cond:
            if self._closed:
                raise RingClosedError("write to a closed ring buffer")
            self._store(x)
            self._cond.notify_all()
            return self._end

    def mark_gap(self, missing: int, reason: str) -> AudioGap:
        """Record that ``missing`` samples were lost here: they are written as zeros.

        The returned record has ``sample`` = the index where real audio resumes, so the zeros
        occupy ``[gap.sample - gap.missing, gap.sample)``. ``missing`` may be 0 when the amount
        is unknown (a device overflow without timestamps): continuity is still broken there.
        """
        if missing < 0:
            raise ValueError(f"missing must be >= 0, got {missing}")
        with self._cond:
            if self._closed:
                raise RingClosedError("mark_gap on a closed ring buffer")
            self._fill_zeros(missing)
            gap = AudioGap(sample=self._end, missing=missing, reason=reason)
            self._gaps.append(gap)
            self._dropped += missing
            self._cond.notify_all()
            return gap

    def read(self, start: int, end: int) -> np.ndarray:
        """A copy of samples ``[start, end)``.

        Raises:
            EvictedError: part of the range was already overwritten.
            ValueError: the range is reversed or reaches past :attr:`write_index`.
        """
        if start > end or start < 0:
            raise ValueError(f"bad range [{start}, {end})")
        with self._cond:
            if end > self._end:
                raise ValueError(f"range [{start}, {end}) reaches past write index {self._end}")
            if start < self._end - self._capacity:
                raise EvictedError(
                    f"samples [{start}, {end}) were overwritten; oldest readable is {self.oldest_index}"
                )
            return self._copy_out(start, end)

    def wait_for(self, index: int, timeout: float | None = None) -> bool:
        """Block until ``write_index >= index``, the buffer is closed, or ``timeout`` passes.

        Returns True when the samples up to ``index`` exist. False means timeout or closed
        (check :attr:`closed`: after close, no more samples will come).
        """
        with self._cond:
            self._cond.wait_for(lambda: self._end >= index or self._closed, timeout)
            return self._end >= index

    def close(self) -> None:
        """No more samples will come: wakes every waiter. Reads stay possible."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def gaps_since(self, index: int) -> list[AudioGap]:
        """Gaps whose zeros end after ``index`` (``gap.sample > index``), oldest first."""
        with self._cond:
            gaps = list(self._gaps)
        # Gap records are appended in index order, so the list is sorted by ``sample``.
        i = bisect.bisect_right([g.sample for g in gaps], index)
        return gaps[i:]

    def wait_for_gap(self, index: int, timeout: float | None = None) -> list[AudioGap]:
        """Block until a gap with ``sample > index`` exists (or close/timeout); return them."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or any(g.sample > index for g in self._gaps), timeout)
        return self.gaps_since(index)

    def advance_reader(self, index: int) -> None:
        """A lossless reader no longer needs samples before ``index``: enables backpressure.

        Only producers that can wait (files) use it, through :meth:`wait_for_room`; live
        capture never waits, it overwrites.
        """
        with self._cond:
            self._reader = index if self._reader is None else max(self._reader, index)
            self._cond.notify_all()

    def wait_for_room(
        self, count: int, timeout: float | None = None, cancel: threading.Event | None = None
    ) -> bool:
        """Block until ``count`` more samples fit without overwriting the lossless reader.

        Returns True at once when no reader called :meth:`advance_reader`. Returns False on
        timeout, on close, or when ``cancel`` is set (whoever sets it calls :meth:`wake`).
        """
        count = min(count, self._capacity)

        def room() -> bool:
            return self._reader is None or self._end + count - self._reader <= self._capacity

        with self._cond:
            self._cond.wait_for(
                lambda: room() or self._closed or (cancel is not None and cancel.is_set()), timeout
            )
            return room() and not self._closed and not (cancel is not None and cancel.is_set())

    def wake(self) -> None:
        """Wake every waiter so it re-checks its own stop flag (see ``cancel``)."""
        with self._cond:
            self._cond.notify_all()

    # -- storage (caller holds the lock) -------------------------------------------------

    def _store(self, x: np.ndarray) -> None:
        n = len(x)
        if n > self._capacity:
            # Only the last ``capacity`` samples can survive; skip the rest.
            self._end += n - self._capacity
            x = x[-self._capacity :]
            n = self._capacity
        pos = self._end % self._capacity
        first = min(n, self._capacity - pos)
        self._buf[pos : pos + first] = x[:first]
        self._buf[: n - first] = x[first:]
        self._end += n

    def _fill_zeros(self, n: int) -> None:
        if n >= self._capacity:
            self._buf[:] = 0.0
            self._end += n
            return
        pos = self._end % self._capacity
        first = min(n, self._capacity - pos)
        self._buf[pos : pos + first] = 0.0
        self._buf[: n - first] = 0.0
        self._end += n

    def _copy_out(self, start: int, end: int) -> np.ndarray:
        n = end - start
        out = np.empty(n, dtype=np.float32)
        pos = start % self._capacity
        first = min(n, self._capacity - pos)
        out[:first] = self._buf[pos : pos + first]
        out[first:] = self._buf[: n - first]
        return out
