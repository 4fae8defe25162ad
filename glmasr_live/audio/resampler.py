"""Streaming downmix and resampling of live input to 16 kHz mono (soxr), continuous across blocks."""

from __future__ import annotations

import numpy as np
import soxr

from glmasr_live.events import SAMPLE_RATE

STREAM_RESAMPLE_QUALITY = "HQ"
"""soxr quality for live streams: HQ keeps the filter delay a few ms (VHQ is for whole files)."""


def finite(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """``samples`` with NaN made silence, infinities full scale and everything clipped to
    -1..1, and how many were not finite.

    Applied where audio enters (files, stdin, capture, before any filter): one NaN inside a
    resampler or the segmenter's level tracking would silence everything after it, and float
    input far past full scale (garbage read as f32le holds 1e38s) overflows their arithmetic.
    """
    bad = ~np.isfinite(samples)
    n = int(bad.sum())
    if n:
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    if len(samples) and float(np.max(np.abs(samples))) > 1.0:
        samples = np.clip(samples, -1.0, 1.0)
    return samples, n


class StreamResampler:
    """Downmix to mono and resample to 16 kHz block by block, continuous across blocks.

    Runs on the converter thread of a live source, never in an audio callback.
    """

    def __init__(self, in_rate: int, channels: int = 1, quality: str = STREAM_RESAMPLE_QUALITY) -> None:
        self.in_rate = in_rate
        self.channels = channels
        self.nonfinite = 0  # NaN/inf input samples replaced so far
        self._stream = (
            None
            if in_rate == SAMPLE_RATE
            else soxr.ResampleStream(in_rate, SAMPLE_RATE, 1, dtype="float32", quality=quality)
        )

    def process(self, frames: np.ndarray) -> np.ndarray:
        """``frames``: (n,) or (n, channels) float32 at ``in_rate`` → new 16 kHz mono array."""
        if frames.ndim == 2:
            mono = frames[:, 0] if frames.shape[1] == 1 else frames.mean(axis=1, dtype=np.float32)
        else:
            mono = frames
        mono, bad = finite(np.ascontiguousarray(mono, dtype=np.float32))
        self.nonfinite += bad
        if self._stream is None:
            return mono.copy()
        return self._stream.resample_chunk(mono)

    def flush(self) -> np.ndarray:
        """The samples still inside the filter, then a fresh state (use at the end or a gap)."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        tail = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self._stream.clear()
        return tail
