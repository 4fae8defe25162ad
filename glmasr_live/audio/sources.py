"""Where audio comes from: files, raw PCM on a pipe, (in ``capture``) a microphone.

Every source writes 16 kHz mono float32 into a :class:`RingBuffer` from one thread of its own,
closes the ring when it ends, and sets its ``finished`` event. Errors inside that thread are
kept in ``error`` and raised again by :meth:`wait`, so a caller sees one clear
:class:`AudioInputError` line rather than a dead thread.
"""

from __future__ import annotations

import logging
import os
import selectors
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import numpy as np

from glmasr_live.audio.resampler import StreamResampler
from glmasr_live.audio.ringbuffer import RingBuffer
from glmasr_live.errors import AudioInputError, GlmAsrLiveError
from glmasr_live.events import SAMPLE_RATE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Counters of one source, as a snapshot.

    Fields:
        frames_read: frames received at the native rate (one frame = one sample per channel).
        samples_written: 16 kHz samples written to the ring, gap zeros excluded.
        overflows: PortAudio ``input_overflow`` flags (the device lost audio before us).
        dropped_blocks: callback blocks discarded because the hand-off queue was full.
        dropped_samples: 16 kHz samples written as gap zeros (every cause together).
        stalls: times the watchdog saw no callback for its timeout (dead device or server).
        reopens: times the stream was reopened after a stall.
        callback_errors: exceptions caught inside the audio callback.
    """

    frames_read: int = 0
    samples_written: int = 0
    overflows: int = 0
    dropped_blocks: int = 0
    dropped_samples: int = 0
    stalls: int = 0
    reopens: int = 0
    callback_errors: int = 0


@runtime_checkable
class AudioSource(Protocol):
    """A producer of 16 kHz mono audio into a ring buffer (file, pipe, microphone)."""

    @property
    def name(self) -> str:
        """Human-readable input name for status lines (``mic:pulse``, ``file:talk.wav``)."""
        ...

    @property
    def native_rate(self) -> int:
        """Sample rate of the input before resampling to 16 kHz."""
        ...

    @property
    def finished(self) -> threading.Event:
        """Set once the source has ended (end of input, error or stop) and closed the ring."""
        ...

    @property
    def stats(self) -> SourceStats: ...

    @property
    def error(self) -> GlmAsrLiveError | None:
        """Why the source ended early, if it did."""
        ...

    def start(self, ring: RingBuffer) -> None:
        """Begin writing into ``ring`` from a thread of the source. Raises for bad input."""
        ...

    def stop(self) -> None:
        """Stop and join the source's threads; idempotent."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for ``finished``; raise the source's error if it failed."""
        ...


class _ThreadedSource:
    """Start/stop/wait/error plumbing shared by sources that run one producer thread.

    ``lossless``: the source can wait (a file read as fast as it goes, a pipe, whose writer
    the kernel holds back while we do not read): it never overwrites audio the reader has
    not taken (back-pressure). A source that cannot wait (a microphone, a file paced in real
    time) overwrites, and the reader marks what it lost as a gap.
    """

    lossless = False

    def __init__(self, name: str, native_rate: int) -> None:
        self._name = name
        self._native_rate = native_rate
        self._finished = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: GlmAsrLiveError | None = None
        self._ring: RingBuffer | None = None
        self._frames_read = 0
        self._samples_written = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def native_rate(self) -> int:
        return self._native_rate

    @property
    def finished(self) -> threading.Event:
        return self._finished

    @property
    def error(self) -> GlmAsrLiveError | None:
        return self._error

    @property
    def stats(self) -> SourceStats:
        ring = self._ring
        return SourceStats(
            frames_read=self._frames_read,
            samples_written=self._samples_written,
            dropped_samples=ring.dropped_samples if ring is not None else 0,
        )

    def start(self, ring: RingBuffer) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self._name} already started")
        self._ring = ring
        self._prepare()  # in the caller's thread: bad input fails here, with one clear line
        self._thread = threading.Thread(
            target=self._main, args=(ring,), name=f"source-{self._name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._interrupt()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def wait(self, timeout: float | None = None) -> bool:
        done = self._finished.wait(timeout)
        if self._error is not None:
            raise self._error
        return done

    def run(self, ring: RingBuffer) -> None:
        """Produce everything in the calling thread (offline use); closes the ring at the end."""
        self._ring = ring
        try:
            self._prepare()
            self._produce(ring)
        finally:
            ring.close()
            self._finished.set()

    def _main(self, ring: RingBuffer) -> None:
        try:
            self._produce(ring)
        except GlmAsrLiveError as e:
            self._error = e  # the session raises it at its end: the front end shows it once
            log.debug("input ended: %s", e)
        except Exception as e:  # a bug, but the pipeline must learn that the input ended
            self._error = AudioInputError(f"{self._name}: input failed: {e!r}")
            log.exception("%s: input thread failed", self._name)
        finally:
            ring.close()
            self._finished.set()

    def _write(self, ring: RingBuffer, samples: np.ndarray) -> None:
        if len(samples):
            if self.lossless and not ring.wait_for_room(len(samples), cancel=self._stop):
                return  # stopped (or closed) while waiting
            ring.write(samples)
            self._samples_written += len(samples)

    def _prepare(self) -> None:
        """Open/validate the input; raise AudioInputError for bad input."""

    def _produce(self, ring: RingBuffer) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Wake the producer thread out of any blocking wait so it sees the stop event."""
        if self._ring is not None:
            self._ring.wake()


class FileSource(_ThreadedSource):
    """A whole file, as fast as the reader takes it, or paced like a live input.

    ``realtime=True`` writes each block when its last sample "would have been captured":
    the deadline is ``start + end_index / (16000 × speed)`` on the monotonic clock, so pacing
    errors never accumulate. Fast mode honours a lossless reader (``ring.advance_reader``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        realtime: bool = False,
        speed: float = 1.0,
        block_s: float | None = None,
    ) -> None:
        self.path = Path(path)
        super().__init__(f"file:{self.path.name}", SAMPLE_RATE)
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.realtime = realtime
        self.lossless = not realtime
        self.speed = speed
        # 20 ms blocks mimic a microphone; 1 s blocks keep fast mode cheap.
        self.block = int(SAMPLE_RATE * (block_s if block_s is not None else 0.02 if realtime else 1.0))
        self._file: Any = None

    def _prepare(self) -> None:
        """Check the file (one clear line for a missing, empty or broken one); nothing is
        decoded yet: the file is read block by block as it is produced, never held whole."""
        from glmasr_live.audio.filestream import open_file

        if self._file is None:
            self._file = open_file(self.path)
            try:
                import soundfile as sf

                self._native_rate = sf.info(str(self.path)).samplerate
            except Exception:  # ffmpeg-only formats: the rate is informative, 16 kHz will do
                self._native_rate = SAMPLE_RATE

    def _produce(self, ring: RingBuffer) -> None:
        assert self._file is not None
        t0 = time.monotonic()
        rate = SAMPLE_RATE * self.speed
        done = 0
        for chunk in self._file.blocks():
            self._frames_read += len(chunk)
            for start in range(0, len(chunk), self.block):
                piece = chunk[start : start + self.block]
                done += len(piece)
                # Blocking on the stop event (not sleep) makes stop() take effect at once.
                if self.realtime and self._stop.wait(max(0.0, t0 + done / rate - time.monotonic())):
                    return
                self._write(ring, piece)  # a lossless write waits for room
                if self._stop.is_set():
                    return


PCM_FORMATS: dict[str, tuple[str, float, float]] = {
    "s16le": ("<i2", 1 / 32768, 0.0),
    "s32le": ("<i4", 1 / 2**31, 0.0),
    "f32le": ("<f4", 1.0, 0.0),
    "u8": ("u1", 1 / 128, -128.0),
}
"""Raw PCM formats on a pipe: numpy dtype, scale to ±1 and offset (applied before scaling)."""


def decode_pcm(data: bytes | bytearray | memoryview, fmt: str, channels: int) -> np.ndarray:
    """Whole frames of raw PCM → (frames, channels) float32."""
    dtype, scale, offset = PCM_FORMATS[fmt]
    x = np.frombuffer(data, dtype=dtype).astype(np.float32)
    if scale == 1.0:  # float PCM: clipped before the channels are mixed (1e38s would overflow)
        x = np.clip(x, -1.0, 1.0)
    if offset:
        x += offset
    if scale != 1.0:
        x *= scale
    return x.reshape(-1, channels)


class StdinSource(_ThreadedSource):
    """Raw PCM (``s16le``, ``s32le``, ``f32le``, ``u8``; rate and channels given) on a binary
    stream, standard input by default. End of stream ends the source; a partial frame at the
    end is an :class:`AudioInputError` (after the complete frames were delivered).

    Pipes are read with ``os.read`` on the file descriptor (whatever has arrived, for low
    latency), so nothing else should have read from a buffered ``stream`` before.
    """

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        fmt: str,
        rate: int,
        channels: int = 1,
        block_s: float = 0.02,
        name: str = "stdin",
    ) -> None:
        if fmt not in PCM_FORMATS:
            raise AudioInputError(f"unknown raw PCM format {fmt!r} (choose {', '.join(PCM_FORMATS)})")
        if not (1000 <= rate <= 768_000) or not (1 <= channels <= 64):
            raise AudioInputError(
                f"raw PCM needs a rate from 1000 to 768000 Hz and 1 to 64 channels (got {rate} Hz, {channels})"
            )
        if stream is None and sys.stdin is None:
            raise AudioInputError("standard input is closed: pipe raw PCM into --input -")
        super().__init__(name, rate)
        self.lossless = True  # a pipe's writer waits while we do not read
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.fmt = fmt
        self.channels = channels
        self.frame_bytes = np.dtype(PCM_FORMATS[fmt][0]).itemsize * channels
        self.read_bytes = max(1, int(rate * block_s)) * self.frame_bytes
        # Self-pipe: stop() writes a byte so a select() on an idle input pipe returns at once.
        # Open only while producing; the lock keeps stop() from writing to a closed (reused) fd.
        self._wake: tuple[int, int] | None = None
        self._wake_lock = threading.Lock()

    def _produce(self, ring: RingBuffer) -> None:
        resampler = StreamResampler(self._native_rate, self.channels)
        pending = bytearray()
        with self._wake_lock:
            self._wake = os.pipe()
        try:
            while not self._stop.is_set():
                data = self._read_some()
                if not data:
                    break
                pending += data
                whole = len(pending) - len(pending) % self.frame_bytes
                if whole:
                    frames = decode_pcm(memoryview(pending)[:whole], self.fmt, self.channels)
                    del pending[:whole]
                    self._frames_read += len(frames)
                    self._write(ring, resampler.process(frames))
            self._write(ring, resampler.flush())
        finally:
            with self._wake_lock:
                wake, self._wake = self._wake, None
            if wake is not None:
                os.close(wake[0])
                os.close(wake[1])
        if not self._frames_read and not pending and not self._stop.is_set():
            raise AudioInputError(f"{self._name}: no audio arrived (the input was empty)")
        if pending and not self._stop.is_set():
            raise AudioInputError(
                f"{self._name}: input ended with a partial sample ({len(pending)} stray byte(s); "
                f"{self.fmt} × {self.channels} channel(s) comes in frames of {self.frame_bytes} bytes)"
            )

    def _read_some(self) -> bytes:
        """Up to ``read_bytes`` bytes as soon as any are there; b"" at end of stream or stop."""
        fd = _blocking_fd(self.stream)
        if fd is None or self._wake is None:
            return self.stream.read(self.read_bytes) or b""
        wake_r = self._wake[0]
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            sel.register(wake_r, selectors.EVENT_READ)
            ready = {key.fd for key, _ in sel.select()}
        if wake_r in ready or self._stop.is_set():
            return b""
        # os.read returns what the pipe holds now (low latency), unlike a buffered read(n).
        return os.read(fd, self.read_bytes)

    def _interrupt(self) -> None:
        super()._interrupt()
        with self._wake_lock:
            if self._wake is not None:
                os.write(self._wake[1], b"x")


def _blocking_fd(stream: BinaryIO) -> int | None:
    """The fd of a pipe, socket or terminal (reads that can block forever), else None."""
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):
        return None
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd)):
        return fd
    return None  # a file or a device such as /dev/null: plain reads never block (epoll refuses them)
