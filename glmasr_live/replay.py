"""A recording through the stream policy and the scheduler, on a simulated or a real-time clock.

Used by ``transcribe --mode streaming``, ``eval`` and ``bench``. On the simulated clock the
audio is replayed as fast as the model allows, yet every event carries the audio clock it would
have been emitted at live: a step that starts when the stream is at t and takes d seconds
emits at t + d, and audio keeps arriving meanwhile. With ``realtime`` the clock is the wall
clock since the start, as with a microphone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from glmasr_live.audio.segmenter import SegmenterSettings
from glmasr_live.events import SAMPLE_RATE, CaptionEvent
from glmasr_live.option_table import INTERVAL_S
from glmasr_live.policy import CaptionBuilder, PolicySettings, StreamPolicy

FRAME = SAMPLE_RATE * 30 // 1000  # the segmenter's 30 ms frame


class SimulatedClock:
    """Seconds of stream audio available; advances only by waiting for audio or by compute."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wait_until(self, t: float) -> None:
        self.t = max(self.t, t)

    def spent(self, seconds: float) -> None:
        self.t += seconds


class RealtimeClock:
    """The wall clock since start: audio time t is available once t seconds have passed."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self._never = threading.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def wait_until(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            self._never.wait(delay)  # pacing the replay itself, not waiting for a result

    def spent(self, seconds: float) -> None:
        pass  # the wall clock moved by itself


@dataclass(frozen=True)
class ReplaySettings:
    """Fields:
    interval_s: target time between partial steps; the real interval is never shorter than a
        step takes (a step starts only when the previous one is done: nothing queues up).
    realtime: pace the replay on the wall clock.
    partials: emit partial captions (False: finals only).
    """

    interval_s: float = INTERVAL_S
    realtime: bool = False
    partials: bool = True


def replay(
    audio: np.ndarray,
    decoder: Any,
    settings: ReplaySettings | None = None,
    segmenter: SegmenterSettings | None = None,
    builder: CaptionBuilder | None = None,
    policy: StreamPolicy | None = None,
) -> Iterator[CaptionEvent]:
    """Yield caption events for ``audio`` (16 kHz mono) as they would appear live: the stream
    policy and the scheduler of the live path, one stream, driven without threads."""
    from glmasr_live.asr.scheduler import Scheduler

    st = settings or ReplaySettings()
    clock = RealtimeClock() if st.realtime else SimulatedClock()
    if policy is None:  # a caller that reads the policy's counters afterwards brings its own
        policy = StreamPolicy(
            builder, PolicySettings(interval_s=st.interval_s, partials=st.partials), segmenter
        )
    out: list[CaptionEvent] = []
    sched = Scheduler(lambda: decoder)
    stream = sched.open(policy, clock, out.extend)
    n, pos = len(audio), 0
    while pos < n:
        clock.wait_until((pos + FRAME) / SAMPLE_RATE)
        target = min(n, max(pos + FRAME, int(clock.now() * SAMPLE_RATE)))
        stream.feed(audio[pos:target])
        pos = target
        sched.run_round()
        yield from out
        out.clear()
    stream.end()
    while not stream.finished.is_set():
        sched.run_round()
        yield from out
        out.clear()
