"""The records of microphone capture: how to open the device (``CaptureSettings``), what the
operator should hear about (``CaptureEvent``) and what the live stream costs (``CaptureTiming``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """How to open the microphone.

    Fields:
        device: ``--input-device``: index, or case-insensitive substring of the name; None is
            the default input device.
        samplerate: capture rate; None = the device's default rate (resampled to 16 kHz later).
        channels: channels to capture (averaged later); None = the device's, at most 2.
        block_s: PortAudio block length. 20 ms keeps latency low and callbacks cheap.
        queue_blocks: blocks the hand-off queue holds (~1.3 s at 20 ms) before dropping.
        stall_timeout_s: no callback for this long means the device or server died.
        backoff_s: waits between reopen attempts; the last one repeats.
        latency: PortAudio's suggested latency: "high" buffers more and rides out scheduling
            hiccups on a busy machine (overflows cost more than ~50 ms of delay), "low" or seconds.
    """

    device: str | int | None = None
    samplerate: int | None = None
    channels: int | None = None
    block_s: float = 0.02
    queue_blocks: int = 64
    stall_timeout_s: float = 1.0
    backoff_s: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    latency: str | float = "high"


CaptureEventKind = Literal["opened", "stalled", "reopened", "reopen_failed", "callback_error"]


@dataclass(frozen=True, slots=True)
class CaptureEvent:
    """Something the operator should hear about (also logged).

    Fields:
        kind: ``opened``, ``stalled``, ``reopened``, ``reopen_failed`` or ``callback_error``.
        message: one human-readable line.
        time: ``time.monotonic()`` when it happened.
    """

    kind: CaptureEventKind
    message: str
    time: float


@dataclass(frozen=True, slots=True)
class CaptureTiming:
    """Costs measured on the live stream.

    Fields:
        blocks: callbacks timed.
        callback_us_mean / callback_us_max: time spent inside the PortAudio callback.
        ring_latency_ms_mean / ring_latency_ms_max: callback entry → samples in the ring.
        input_latency_ms: PortAudio's reported input latency (ADC → callback), per stream.
    """

    blocks: int
    callback_us_mean: float
    callback_us_max: float
    ring_latency_ms_mean: float
    ring_latency_ms_max: float
    input_latency_ms: float
