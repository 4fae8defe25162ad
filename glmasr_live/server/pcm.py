"""Audio frames from the network: bytes → float32 samples, and the pace a live socket may keep.

I/O-free: the caller passes the bytes and the clock readings.
"""

from __future__ import annotations

import math

import numpy as np

ENCODINGS: dict[str, np.dtype] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MAX_FLOAT = 64.0
"""f32le samples beyond this are not audio in [-1, 1] (s16le bytes sent as f32le, say)."""


class FrameError(ValueError):
    """A frame that is not the audio the client announced; the message is the close reason."""


class PcmDecoder:
    """Decodes one stream's binary frames (``encoding`` at ``channels`` interleaved)."""

    def __init__(self, encoding: str, channels: int) -> None:
        if encoding not in ENCODINGS:
            raise FrameError(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
        self.dtype: np.dtype = ENCODINGS[encoding]
        self.encoding = encoding
        self.channels = channels
        self.frame_bytes = self.dtype.itemsize * channels

    def decode(self, data: bytes) -> np.ndarray:
        """Samples as (n, channels) float32 in [-1, 1]; FrameError for anything else."""
        if len(data) % self.frame_bytes:
            raise FrameError(
                f"a {len(data)}-byte frame is not whole {self.encoding} samples of "
                f"{self.channels} channel(s) ({self.frame_bytes} bytes each)"
            )
        x = np.frombuffer(data, self.dtype)
        if self.dtype.kind == "i":
            y = x.astype(np.float32) / 32768.0
        else:
            if not np.isfinite(x).all():
                raise FrameError("f32le frame holds NaN or infinite samples")
            if len(x) and float(np.abs(x).max()) > MAX_FLOAT:
                raise FrameError("f32le samples far outside [-1, 1]: is the audio really f32le?")
            y = x.astype(np.float32)
        return y.reshape(-1, self.channels)


class Pace:
    """Refuses audio sustained faster than ``max_speed`` × real time after a ``burst_s`` allowance.

    ``ahead = audio sent - max_speed × wall time since the first frame``; more than ``burst_s``
    ahead is too fast. A live source sends at 1×, so it never comes near.
    """

    def __init__(self, max_speed: float, burst_s: float) -> None:
        self.max_speed = max_speed
        self.burst_s = burst_s
        self.audio_s = 0.0
        self._t0: float | None = None

    def add(self, seconds: float, now: float) -> bool:
        """Count ``seconds`` of audio arriving at wall time ``now``; False: too fast."""
        if self._t0 is None:
            self._t0 = now
        self.audio_s += seconds
        if not math.isfinite(self.max_speed) or self.max_speed <= 0:
            return True
        return self.audio_s - self.max_speed * (now - self._t0) <= self.burst_s
