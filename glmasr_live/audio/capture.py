"""Microphone capture through PortAudio (sounddevice; devices are found in ``audio.devices``).

Three threads, each with one job:

* PortAudio's callback thread copies each block into a preallocated slot and hands the slot
  number to a bounded queue (``put_nowait``). Nothing else happens there: no allocation of
  audio arrays, no locks held for long, no user code. A full queue drops the *new* block
  (policy ``DROP_NEWEST``: what is queued stays in order) and counts it.
* ``capture-convert`` downmixes, resamples to 16 kHz (soxr, continuous across blocks) and is
  the ring's only writer, so lost audio is written as gaps in stream order.
* ``capture-watchdog`` notices a dead device or audio server (PortAudio has no hot-plug: the
  stream just ends, or callbacks stop) within ``stall_timeout_s``, reports it, has the gap
  marked, rescans devices and reopens with backoff.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from glmasr_live.audio.capture_types import CaptureEvent, CaptureEventKind, CaptureSettings, CaptureTiming
from glmasr_live.audio.devices import InputDevice, find_input_device, rescan_devices, sounddevice
from glmasr_live.audio.loss_detector import SilentLossDetector
from glmasr_live.audio.resampler import StreamResampler
from glmasr_live.audio.ringbuffer import RingBuffer, RingClosedError
from glmasr_live.audio.sources import SourceStats
from glmasr_live.errors import DeviceError
from glmasr_live.events import SAMPLE_RATE

log = logging.getLogger(__name__)


QUEUE_POLICY = "DROP_NEWEST"
"""Callback → converter hand-off: a full queue drops the incoming block and counts it."""


# One hand-off item: (slot, frames, callback time, ADC time, overflow, frames dropped before it,
# stream generation). A tuple keeps the callback's work minimal.
_Block = tuple[int, int, float, float, bool, int, int]
# Control items from other threads: ("stall", detected_at) and ("stop", 0.0).
_Control = tuple[str, float]
_STOP: _Control = ("stop", 0.0)


class MicrophoneSource:
    """Live input from a PortAudio device into a :class:`RingBuffer` (see module docstring)."""

    def __init__(
        self,
        settings: CaptureSettings | None = None,
        *,
        on_event: Callable[[CaptureEvent], None] | None = None,
    ) -> None:
        self.settings = settings or CaptureSettings()
        # Called from the watchdog/converter threads: must be quick and thread-safe.
        self.on_event = on_event
        self._finished = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()  # wakes the watchdog: stream ended, or stop
        self.dropping = threading.Event()
        """Set by the callback when the queue is full; cleared once the gap is marked."""
        # Unbounded type, bounded use: the callback checks qsize() against queue_blocks itself,
        # so control items from the watchdog can always be queued.
        self._queue: queue.Queue[_Block | _Control] = queue.Queue()
        self._ring: RingBuffer | None = None
        self._device: InputDevice | None = None
        self._stream: Any = None
        self._stream_ended = False
        self._threads: list[threading.Thread] = []
        self._rate = 0
        self._channels = 0
        self._block = 0
        self._slots = np.zeros((1, 1, 1), np.float32)
        self._generation = 0
        # Written by the callback thread only (single writer: plain ints are safe under the GIL).
        self._last_callback = 0.0
        self._slot = 0
        self._overflows = 0
        self._dropped_blocks = 0
        self._dropped_pending = 0
        self._callback_errors = 0
        self._callback_error: BaseException | None = None
        self._cb_count = 0
        self._cb_total = 0.0
        self._cb_max = 0.0
        # Written by the converter / watchdog.
        self._frames_read = 0
        self._samples_written = 0
        self._lat_total = 0.0
        self._lat_max = 0.0
        self._lat_count = 0
        self._stalls = 0
        self._reopens = 0
        self._input_latency = 0.0
        self._error: DeviceError | None = None

    # -- AudioSource -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"mic:{self._device.name}" if self._device else "mic"

    @property
    def native_rate(self) -> int:
        return self._rate

    @property
    def finished(self) -> threading.Event:
        return self._finished

    @property
    def error(self) -> DeviceError | None:
        return self._error

    @property
    def device(self) -> InputDevice | None:
        return self._device

    @property
    def stats(self) -> SourceStats:
        ring = self._ring
        return SourceStats(
            frames_read=self._frames_read,
            samples_written=self._samples_written,
            overflows=self._overflows,
            dropped_blocks=self._dropped_blocks,
            dropped_samples=ring.dropped_samples if ring is not None else 0,
            stalls=self._stalls,
            reopens=self._reopens,
            callback_errors=self._callback_errors,
        )

    @property
    def timing(self) -> CaptureTiming:
        n, m = max(self._cb_count, 1), max(self._lat_count, 1)
        return CaptureTiming(
            blocks=self._cb_count,
            callback_us_mean=self._cb_total / n * 1e6,
            callback_us_max=self._cb_max * 1e6,
            ring_latency_ms_mean=self._lat_total / m * 1e3,
            ring_latency_ms_max=self._lat_max * 1e3,
            input_latency_ms=self._input_latency * 1e3,
        )

    def reset_timing(self) -> None:
        """Start a fresh measurement window for :attr:`timing` (benchmarks skip start-up)."""
        self._cb_count, self._cb_total, self._cb_max = 0, 0.0, 0.0
        self._lat_count, self._lat_total, self._lat_max = 0, 0.0, 0.0

    def start(self, ring: RingBuffer) -> None:
        """Open the device (DeviceError in the caller's thread) and start the threads."""
        if self._threads:
            raise RuntimeError("MicrophoneSource already started")
        self._ring = ring
        s = self.settings
        self._device = dev = find_input_device(s.device)
        self._rate = int(s.samplerate or round(dev.default_rate))
        self._channels = int(s.channels or min(dev.channels, 2))
        self._block = max(1, int(round(self._rate * s.block_s)))
        # One more slot than the queue holds: the converter may still be reading one slot.
        self._slots = np.zeros((s.queue_blocks + 1, self._block, self._channels), np.float32)
        self._open()
        for target, name in ((self._convert, "capture-convert"), (self._watch, "capture-watchdog")):
            t = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self) -> None:
        """Stop the stream and threads; flush the resampler; close the ring. Idempotent."""
        self._stop.set()
        self._wake.set()
        # Watchdog first: it may be reopening the stream, which must stay closed after this.
        for t in self._threads[1:]:
            t.join(timeout=5)
        self._close_stream()
        self._queue.put(_STOP)
        if self._threads:
            self._threads[0].join(timeout=5)
        self._finished.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Live input ends only on stop(); returns whether it has."""
        done = self._finished.wait(timeout)
        if self._error is not None:
            raise self._error
        return done

    # -- PortAudio callback thread -----------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        t0 = time.perf_counter()
        now = time.monotonic()
        self._last_callback = now
        try:
            overflow = bool(status.input_overflow)
            if overflow:
                self._overflows += 1
            # qsize() >= queue_blocks also keeps the slot being converted from being reused.
            if frames > self._block or self._queue.qsize() >= self.settings.queue_blocks:
                self._dropped_blocks += 1
                self._dropped_pending += frames
                if not self.dropping.is_set():
                    self.dropping.set()
                return
            slot = self._slot
            self._slots[slot, :frames] = indata
            item = (slot, frames, now, float(time_info.inputBufferAdcTime), overflow)
            self._queue.put_nowait((*item, self._dropped_pending, self._generation))
            self._dropped_pending = 0
            self._slot = (slot + 1) % len(self._slots)
        except Exception as e:  # an exception here would silently stop the stream
            self._callback_errors += 1
            self._callback_error = e
        finally:
            dt = time.perf_counter() - t0
            self._cb_count += 1
            self._cb_total += dt
            self._cb_max = max(self._cb_max, dt)

    def _finished_callback(self, generation: int) -> None:
        if generation == self._generation and not self._stop.is_set():
            self._stream_ended = True
            self._wake.set()

    # -- converter thread --------------------------------------------------------------------

    def _convert(self) -> None:
        ring = self._ring
        assert ring is not None
        try:
            self._convert_loop(ring, StreamResampler(self._rate, self._channels))
        except RingClosedError:  # a consumer closed the ring: nobody wants more audio
            log.info("%s: ring closed by its reader; capture output discarded", self.name)
        finally:
            ring.close()

    def _convert_loop(self, ring: RingBuffer, rs: StreamResampler) -> None:
        marked_until = time.monotonic()  # time up to which audio is in the ring (written or gap)
        prev_adc, prev_frames, prev_gen, errors_seen = 0.0, 0, self._generation, 0
        clock = SilentLossDetector(self._rate)
        while True:
            item = self._queue.get()
            if len(item) == 2:
                if item == _STOP:
                    break
                ring.write(rs.flush())  # ("stall", detected_at) from the watchdog
                self._gap(ring, item[1] - marked_until, "input stalled: no audio from the device")
                marked_until = max(marked_until, item[1])
                clock.reset()
                continue
            slot, frames, t_cb, adc, overflow, dropped, gen = item  # type: ignore[misc]
            lost, reason = dropped, "capture queue full (converter fell behind)"
            if overflow:
                reason = "input overflow (device buffer)"
                if adc and prev_adc and gen == prev_gen:
                    # The ADC clock says how much is missing; some host APIs report it loosely,
                    # so never believe more than the wall clock allows.
                    by_adc = round((adc - prev_adc) * self._rate) - prev_frames
                    by_wall = round((t_cb - marked_until) * self._rate) - frames
                    lost = max(lost, min(by_adc, by_wall))
            start_t = t_cb - frames / self._rate
            if gen != prev_gen:
                clock.reset()
                if start_t > marked_until:
                    lost, reason = round((start_t - marked_until) * self._rate), "input reopened"
            if lost > 0 or overflow:
                ring.write(rs.flush())  # the resampler must not smooth across lost audio
                self._gap(ring, max(lost, 0) / self._rate, reason)
                clock.account(max(lost, 0))
                self.dropping.clear()
            silent = clock.block(t_cb, frames)
            if silent:
                ring.write(rs.flush())
                self._gap(ring, silent / self._rate, "audio lost upstream (capture was starved of CPU)")
            out = rs.process(self._slots[slot, :frames])
            ring.write(out)
            self._frames_read += frames
            self._samples_written += len(out)
            marked_until, prev_adc, prev_frames, prev_gen = t_cb, adc, frames, gen
            lat = time.monotonic() - t_cb
            self._lat_total += lat
            self._lat_count += 1
            self._lat_max = max(self._lat_max, lat)
            if self._callback_errors != errors_seen:
                errors_seen = self._callback_errors
                self._emit("callback_error", f"audio callback failed: {self._callback_error!r}")
        ring.write(rs.flush())

    def _gap(self, ring: RingBuffer, seconds: float, reason: str) -> None:
        missing = max(0, round(seconds * SAMPLE_RATE))
        ring.mark_gap(missing, reason)
        log.warning("%s: %d ms of audio lost (%s)", self.name, missing * 1000 // SAMPLE_RATE, reason)

    # -- watchdog thread ---------------------------------------------------------------------

    def _watch(self) -> None:
        timeout = self.settings.stall_timeout_s
        while not self._stop.is_set():
            remaining = self._last_callback + timeout - time.monotonic()
            if remaining > 0 and not self._stream_ended:
                self._wake.wait(remaining)
                self._wake.clear()
                continue
            now = time.monotonic()
            self._stalls += 1
            what = (
                "input stream ended"
                if self._stream_ended
                else f"no audio for {now - self._last_callback:.1f} s"
            )
            self._emit("stalled", f"{self.name}: {what}; reopening")
            self._queue.put_nowait(("stall", now))
            self._close_stream()
            self._reopen()

    def _reopen(self) -> None:
        for attempt in itertools.count(1):
            delay = self.settings.backoff_s[min(attempt, len(self.settings.backoff_s)) - 1]
            if self._stop.wait(delay):
                return
            try:
                rescan_devices()  # PortAudio only sees devices that existed at initialisation
                self._device = find_input_device(self._device.name if self._device else self.settings.device)
                self._open()
            except DeviceError as e:
                self._emit("reopen_failed", f"reopen attempt {attempt} failed: {e}")
                continue
            self._reopens += 1
            self._emit("reopened", f"{self.name}: input reopened after {attempt} attempt(s)")
            return

    # -- stream management (caller's thread at start, then the watchdog) ---------------------

    def _open(self) -> None:
        sd = sounddevice()
        dev = self._device
        assert dev is not None
        self._generation += 1
        gen = self._generation
        try:
            stream = sd.InputStream(
                device=dev.index,
                samplerate=self._rate,
                channels=self._channels,
                dtype="float32",
                blocksize=self._block,
                latency=self.settings.latency,
                callback=self._callback,
                finished_callback=lambda: self._finished_callback(gen),
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as e:
            raise DeviceError(
                f"cannot open input device {dev.name!r} at {self._rate} Hz, {self._channels} channel(s): {e}"
            ) from None
        if self._stop.is_set():  # stop() ran while this (watchdog) thread was opening
            stream.abort()
            stream.close()
            return
        self._stream = stream
        self._input_latency = float(stream.latency)
        self._stream_ended = False
        self._last_callback = time.monotonic()  # a fresh stream gets a full stall timeout
        self._emit("opened", f"capturing from {dev.name!r} at {self._rate} Hz, {self._channels} ch")

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.abort()
            stream.close()
        except Exception as e:  # a dead server can make PortAudio complain while closing
            log.debug("closing input stream: %r", e)

    def _emit(self, kind: CaptureEventKind, message: str) -> None:
        event = CaptureEvent(kind, message, time.monotonic())
        (log.info if kind in ("opened", "reopened") else log.warning)("%s", message)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("capture event handler failed")
